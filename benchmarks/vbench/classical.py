"""Weight-free dimensions, streamed frame by frame: temporal flickering (VBench's formula, exact)
with VBench's static filter, dynamic degree and motion smoothness with classical optical flow, and
imaging quality with a blur x noise x naturalness measure (a proxy for MUSIQ). Dynamic degree and
the static filter count a flow vector as motion only where it explains the pair of frames
(:meth:`Flow.magnitudes`), so noise does not read as motion. What the proxies rank and where they
fail, measured on real photographs: ``docs/evaluation-proxies.md``.

Working resolution (VBench's preprocessing, per dimension)
  temporal flickering  every frame at full resolution, no sampling (VBench: same).
  imaging quality      frames resized so the longer side is at most 512 px (bilinear), VBench's
                       default ``imaging_quality_preprocessing_mode='longer'`` before MUSIQ.
  dynamic degree,      VBench runs RAFT at full resolution with thresholds proportional to
  static filter        min(H, W) / 256; flow magnitudes scale with the frame, so the proxy computes
                       flow on frames whose shorter side is at most ``FLOW_SIDE`` px and applies the
                       same formula to that size.
  motion smoothness    flow at ``FLOW_SIDE`` (scaled back up), warping and the MAE at full
                       resolution, as VBench's AMT-S score is.
"""

from __future__ import annotations

import functools

import numpy as np

from .scorers import Scorer, ScorerContext, Unavailable, feed, register, weight_file

FLOW_SIDE = 256  # shorter side (px) of the frames the optical-flow proxies run on
IQ_LONGER_SIDE = 512  # VBench: imaging quality on frames with longer side <= 512
COHERENCE_WINDOW = 15  # px: window of the correlation test that makes a flow vector count as motion
COHERENCE_MIN = 0.5  # correlation of a frame with the next warped back, below which a vector is not motion
TRANSITIVE_PX, TRANSITIVE_FRAC = 1.0, 0.05  # tolerance of the transitivity test (px at FLOW_SIDE, share of |a -> c|)
FLAT_STD = 1.0  # grey-level std below which a frame is flat (uniform, black): imaging quality 0
NOISE_SIGMA_HALF = 8.0  # imaging quality halves every 8 grey levels of estimated noise sigma
QUIET_FRACTION = 0.2  # noise is estimated on this share of pixels, those with the weakest gradient
NATURAL_FLOOR = 0.05  # imaging quality factor of a frame whose gradients are Gaussian (noise)
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise Unavailable("OpenCV is not installed", "pip install opencv-python-headless") from e
    return cv2


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames on 0..255, over pixels and channels (exact)."""
    return _cv2().norm(a, b, _cv2().NORM_L1) / a.size


def downscale(frame: np.ndarray, side: int, longer: bool = False) -> np.ndarray:
    """``frame`` resized (bilinear) so its shorter (or longer) side is at most ``side`` px."""
    cv2 = _cv2()
    h, w = frame.shape[:2]
    scale = side / (max(h, w) if longer else min(h, w))
    if scale >= 1:
        return frame
    return cv2.resize(frame, (int(scale * w), int(scale * h)), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------- temporal flickering


class Flickering:
    """VBench: (255 - mean_i MAE(frame_i, frame_i+1)) / 255 on full-resolution frames; None for
    a single frame."""

    def __init__(self):
        self.prev, self.total, self.pairs = None, 0.0, 0

    def update(self, frame):
        if self.prev is not None:
            self.total += _mae(self.prev, frame)
            self.pairs += 1
        self.prev = frame

    def result(self):
        return (255.0 - self.total / self.pairs) / 255.0 if self.pairs else None


def temporal_flickering_score(video: np.ndarray) -> float | None:
    return feed(Flickering(), video)


# ----------------------------------------------------------------------------- optical flow


class Flow:
    """Dense flow between grey frames with OpenCV DIS or Farneback (no weights)."""

    def __init__(self, method: str = "dis"):
        cv2 = _cv2()
        self.method = method
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        self.last = None  # (a, b, flow) of the last call: b -> c of one pair is a -> b of the next

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """The frame as the flow wants it (grey, at the working resolution) and its min(H, W)."""
        g = flow_frame(frame)
        return g, min(g.shape)

    def __call__(self, ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
        """Flow (h, w, 2) from ``ga`` to ``gb``."""
        if self.last is not None and self.last[0] is ga and self.last[1] is gb:
            return self.last[2]
        if self.dis is not None:
            flow = self.dis.calc(ga, gb, None)
        else:
            flow = _cv2().calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        self.last = (ga, gb, flow)
        return flow

    def magnitudes(
        self, ga: np.ndarray, gb: np.ndarray, gc: np.ndarray | None = None, c_first: bool = False
    ) -> np.ndarray:
        """|flow| (h, w) from ``ga`` to ``gb``, 0 where it is not motion. A classical flow returns
        vectors between any two frames (DIS between two unrelated noise frames: top-5% magnitudes
        of 8-18 px at 256 px), so a vector counts only where (1) ``gb`` warped back by the flow
        :func:`matches` ``ga``, and (2) given a third frame ``gc``, correspondences are
        transitive: a -> b, then b -> c, lands within TRANSITIVE_PX + TRANSITIVE_FRAC |a -> c| of
        where a -> c does (any motion, steady or not, passes; smooth noise that changes every
        frame, which DIS morphs pair by pair, does not). When ``gc`` comes before ``ga``
        (``c_first``), time runs backwards: |b -> a| checked with b -> a -> c. VBench's RAFT
        has no such tests."""
        if c_first:
            return self.magnitudes(gb, ga, gc)
        flow = self(ga, gb)
        keep = matches(ga.astype(np.float32), _warp(gb.astype(np.float32), flow))
        if gc is not None:
            direct = self(ga, gc)
            miss = np.linalg.norm(flow + _warp(self(gb, gc), flow) - direct, axis=-1)  # a -> b -> c vs a -> c
            keep &= miss < TRANSITIVE_PX + TRANSITIVE_FRAC * np.linalg.norm(direct, axis=-1)
        return np.where(keep, np.linalg.norm(flow, axis=-1), 0.0)


def flow_frame(frame: np.ndarray) -> np.ndarray:
    """The grey frame at the flow proxies' working resolution."""
    return _cv2().cvtColor(downscale(frame, FLOW_SIDE), _cv2().COLOR_RGB2GRAY)


def matches(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where float32 grey frame ``b`` reproduces ``a``: the normalised cross-correlation over a
    ``COHERENCE_WINDOW`` box, cov / sqrt(var_a var_b + 1), exceeds ``COHERENCE_MIN``, or ``a`` is
    flat there (std < ``FLAT_STD``: nothing to check, the flow is kept as RAFT's would be)."""
    cv2, k = _cv2(), COHERENCE_WINDOW
    box = lambda x: cv2.boxFilter(x, -1, (k, k), borderType=cv2.BORDER_REFLECT)  # noqa: E731
    ma, mb = box(a), box(b)
    var_a, var_b = np.maximum(box(a * a) - ma * ma, 0), np.maximum(box(b * b) - mb * mb, 0)
    return ((box(a * b) - ma * mb) / np.sqrt(var_a * var_b + 1.0) > COHERENCE_MIN) | (var_a < FLAT_STD**2)


def top_flow_magnitude(magnitudes: np.ndarray, fraction: float = 0.05) -> float:
    """VBench's per-pair statistic: mean of the largest ``fraction`` of the per-pixel flow
    ``magnitudes`` (5% for dynamic degree, 2% for the static filter)."""
    rad = magnitudes.ravel()
    cut = max(int(rad.size * fraction), 1)
    return float(np.partition(rad, rad.size - cut)[rad.size - cut :].mean())


class DynamicDegree:
    """VBench: frames sampled at ~8 fps; 1.0 if at least round(4 n / 16) consecutive pairs have a
    top-5% flow magnitude above 6 * min(H, W) / 256, else 0.0 (n = sampled frames). ``flow`` is a
    flow backend (:class:`Flow`, or RAFT from ``raft.py``) given a third sampled frame for its
    tests of motion: the next one, or the one before for the last pair."""

    def __init__(self, fps: float | None = None, flow=None):
        self.step = max(round(fps / 8), 1) if fps else 1
        self.flow, self.seen, self.last, self.side, self.mags = flow or Flow(), 0, [], 0, []

    def update(self, frame):
        if self.seen % self.step == 0:
            rep, self.side = self.flow.prepare(frame)
            self.last = [*self.last[-2:], rep]  # the last three sampled frames
            if len(self.last) == 3:  # the pair before, checked with this frame
                self.mags.append(top_flow_magnitude(self.flow.magnitudes(*self.last)))
        self.seen += 1

    def result(self):
        if len(self.last) >= 2:  # the last pair, checked with the frame before it if any
            before = self.last[0] if len(self.last) == 3 else None
            self.mags.append(top_flow_magnitude(self.flow.magnitudes(*self.last[-2:], before, c_first=True)))
            self.last = []
        if not self.mags:
            return None
        thres = 6.0 * self.side / 256.0
        return float(sum(m > thres for m in self.mags) >= round(4 * (len(self.mags) + 1) / 16.0))


def dynamic_degree_score(video: np.ndarray, fps: float | None = None, method: str = "dis") -> float | None:
    return feed(DynamicDegree(fps, Flow(method)), video)


# ----------------------------------------------------------------------------- motion smoothness


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """Pixel coordinates (h, w, 2) as float32 (x, y)."""
    return np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp ``img`` by ``flow``: out(x) = img(x + flow(x)), bilinear."""
    cv2 = _cv2()
    return cv2.remap(img, _grid(*flow.shape[:2]) + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _upscale_flow(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flow computed on a downscaled frame, resized to (h, w) with its vectors scaled alike."""
    if flow.shape[:2] == (h, w):
        return flow
    up = _cv2().resize(flow, (w, h), interpolation=_cv2().INTER_LINEAR)
    return up * np.array([w / flow.shape[1], h / flow.shape[0]], np.float32)


def interpolate_midpoint(a: np.ndarray, b: np.ndarray, flow: Flow, ga=None, gb=None) -> np.ndarray:
    """Flow-warped midpoint of two frames (Super-SloMo's linear flow approximation at t = 1/2);
    flow on the grey working-resolution frames ``ga``/``gb``, warping at full resolution."""
    ga = flow_frame(a) if ga is None else ga
    gb = flow_frame(b) if gb is None else gb
    h, w = a.shape[:2]
    f_ab, f_ba = _upscale_flow(flow(ga, gb), h, w), _upscale_flow(flow(gb, ga), h, w)
    f_ta = -0.25 * f_ab + 0.25 * f_ba  # flow from the midpoint back to a
    f_tb = 0.25 * f_ab - 0.25 * f_ba  # flow from the midpoint on to b
    return _cv2().addWeighted(_warp(a, f_ta), 0.5, _warp(b, f_tb), 0.5, 0.0)  # rounded, saturated uint8


class FlowInterpolator:
    """Midpoints by flow warping (:func:`interpolate_midpoint`); ``prepare`` gives a frame's grey
    working-resolution copy, reused when the frame is the left end of the next pair."""

    def __init__(self, method: str = "dis"):
        self.flow = Flow(method)

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return flow_frame(frame)

    def __call__(self, a, ra, b, rb) -> np.ndarray:
        return interpolate_midpoint(a, b, self.flow, ra, rb)


class MotionSmoothness:
    """VBench's protocol: interpolate the odd frames from the even ones, score
    (255 - mean MAE(real odd, interpolated odd)) / 255. ``interp`` is :class:`FlowInterpolator`
    or VBench's AMT-S (``amt.py``)."""

    def __init__(self, interp=None):
        self.interp, self.seen, self.even, self.odd, self.maes = interp or FlowInterpolator(), 0, None, None, []

    def update(self, frame):
        if self.seen % 2:
            self.odd = frame
        else:
            rep = self.interp.prepare(frame)
            if self.even is not None:
                self.maes.append(_mae(self.odd, self.interp(*self.even, frame, rep)))
            self.even = (frame, rep)
        self.seen += 1

    def result(self):
        return (255.0 - float(np.mean(self.maes))) / 255.0 if self.maes else None


def motion_smoothness_score(video: np.ndarray, method: str = "dis") -> float | None:
    return feed(MotionSmoothness(FlowInterpolator(method)), video)


# ----------------------------------------------------------------------------- static filter


class StaticCheck:
    """VBench's ``static_filter.py``: top-2% flow magnitude of every consecutive pair, then of
    (first, last) and (last, first); with thres = 3 * min(H, W) / 256 and c = round(2 n / 16) the
    clip is static unless more than c consecutive pairs exceed thres or one of the two
    first/last pairs exceeds 2 c thres. ``result`` is 1.0 (static) or 0.0."""

    def __init__(self, flow=None):
        self.flow, self.first, self.prev, self.side, self.mags, self.n = flow or Flow(), None, None, 0, [], 0

    def update(self, frame):
        rep, self.side = self.flow.prepare(frame)
        if self.prev is None:
            self.first = rep
        else:
            self.mags.append(top_flow_magnitude(self.flow.magnitudes(self.prev, rep), 0.02))
        self.prev, self.n = rep, self.n + 1

    def result(self):
        if self.n < 2:
            return None
        thres, count_num = 3.0 * self.side / 256.0, round(2 * self.n / 16.0)
        ends = [
            top_flow_magnitude(self.flow.magnitudes(self.first, self.prev), 0.02),
            top_flow_magnitude(self.flow.magnitudes(self.prev, self.first), 0.02),
        ]
        moving = sum(m > thres for m in self.mags) > count_num or any(m > thres * count_num * 2 for m in ends)
        return float(not moving)


def is_static(video: np.ndarray, method: str = "dis") -> bool | None:
    r = feed(StaticCheck(Flow(method)), video)
    return None if r is None else bool(r)


# ----------------------------------------------------------------------------- imaging quality


def blur_effect(gray: np.ndarray, h_size: int = 11) -> float:
    """The no-reference perceptual blur metric of Crete-Roffet et al. (2007), 0 sharp .. 1 blurred,
    as ``skimage.measure.blur_effect`` computes it, in OpenCV (about 10x faster): per axis, the
    share of the Sobel gradient energy that an ``h_size`` box blur along that axis removes is
    1 - B; the metric is max over the axes of B = |M1 - M2| / M1, M1 = sum |grad I|,
    M2 = sum max(0, |grad I| - |grad blur(I)|), on the interior (a flat axis counts as 1)."""
    cv2 = _cv2()
    g = gray.astype(np.float32)
    out = []
    for dx, dy, ksize in ((0, 1, (1, h_size)), (1, 0, (h_size, 1))):  # axis 0 (rows), then axis 1
        sharp = np.abs(cv2.Sobel(g, cv2.CV_32F, dx, dy, ksize=3, borderType=cv2.BORDER_REFLECT))
        blurred = cv2.blur(g, ksize, borderType=cv2.BORDER_REFLECT)
        blur = np.abs(cv2.Sobel(blurred, cv2.CV_32F, dx, dy, ksize=3, borderType=cv2.BORDER_REFLECT))
        inner = (slice(2, g.shape[0] - 1), slice(2, g.shape[1] - 1))
        m1 = float(sharp[inner].sum(dtype=np.float64))
        m2 = float(np.maximum(sharp - blur, 0)[inner].sum(dtype=np.float64))
        out.append(abs(m1 - m2) / m1 if m1 > 0 else 1.0)
    return max(out)


def noise_sigma(gray: np.ndarray) -> float:
    """Noise sigma (grey levels) of a float32 grey frame, robust to texture: Immerkaer's (1996)
    estimate sqrt(pi / 2) mean |L * I| / 6, with L = [[1,-2,1],[-2,4,-2],[1,-2,1]] (the difference
    of two Laplacians: 0 on a locally linear image, 6 sigma std on i.i.d. noise), averaged only over
    the ``QUIET_FRACTION`` of interior pixels with the weakest Sobel gradient, so edges and texture
    are not taken for noise (Tai & Yang 2008). scikit-image's photographs read 0.3-1.1 (the Haar
    wavelet MAD estimate: 0.5-2.2), its grass texture 8.3 (11.9), and 10.1-10.7 with noise of sigma
    10 added (``benchmarks/results/proxy_ranking.md``)."""
    cv2 = _cv2()
    lap = cv2.filter2D(gray, -1, IMMERKAER, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    grad = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    quiet = grad <= np.quantile(grad, QUIET_FRACTION)
    return float(np.sqrt(np.pi / 2) * np.abs(lap[quiet]).mean() / 6)


def gradient_kurtosis(gray: np.ndarray) -> float:
    """Kurtosis E[d^4] / E[d^2]^2 of the horizontal and vertical pixel differences d of a float32
    grey frame (mean removed). Exactly 3 for any Gaussian random field, smooth or not (its
    differences are Gaussian); natural images have sparse, heavy-tailed gradients (Huang & Mumford
    1999): 6.9-96 on scikit-image's photographs, 4.2 on its retina scan; noise pulls it back to 3."""
    d = np.concatenate([np.diff(gray, axis=0).ravel(), np.diff(gray, axis=1).ravel()]).astype(np.float64)
    d -= d.mean()
    var = float((d * d).mean())
    return float((d**4).mean() / var**2) if var > 0 else 3.0


def naturalness(gray: np.ndarray) -> float:
    """max(1 - exp(-(kurtosis - 3)), NATURAL_FLOOR): about 1 for a photograph (kurtosis >= 6),
    the floor for noise, smooth or not, which no blur or noise measure tells from a picture."""
    return max(1.0 - float(np.exp(3.0 - gradient_kurtosis(gray))), NATURAL_FLOOR)


def blur_noise_quality(frame: np.ndarray) -> float | None:
    """Imaging quality of one RGB frame in (0, 1], higher is better; None for a flat frame:

        (1 - blur) * 2 ** (-sigma / NOISE_SIGMA_HALF) * naturalness

    blur = :func:`blur_effect` (0 sharp .. 1 blurred); sigma = :func:`noise_sigma` of the grey
    frame. Noise lowers the blur metric (it adds sharp detail), so the noise factor must outweigh
    that: it halves the score every ``NOISE_SIGMA_HALF`` grey levels (Gaussian noise of sigma 30 on
    RGB reads about 19 in grey, i.i.d. uniform noise about 50) and never reaches 0, so heavier
    noise always ranks lower. :func:`naturalness` sinks random fields, which read as sharp and
    noise-free when smooth. Measured on real photographs: ``benchmarks/proxy_ranking.py``.
    """
    g = _cv2().cvtColor(frame, _cv2().COLOR_RGB2GRAY).astype(np.float32)
    if g.std() < FLAT_STD:
        return None
    return float((1.0 - blur_effect(g)) * 2.0 ** (-noise_sigma(g) / NOISE_SIGMA_HALF) * naturalness(g))


class ImagingQuality:
    """Mean over frames of :func:`blur_noise_quality` on frames with longer side <= 512 px; a flat
    frame (uniform, black: no image to judge) scores 0 and is counted in ``notes``."""

    def __init__(self):
        self.scores, self.notes = [], {"flat_frames": 0}

    def update(self, frame):
        q = blur_noise_quality(downscale(frame, IQ_LONGER_SIDE, longer=True))
        self.notes["flat_frames"] += q is None
        self.scores.append(0.0 if q is None else q)

    def result(self):
        return float(np.mean(self.scores)) if self.scores else None


# ----------------------------------------------------------------------------- registry


@register("temporal_flickering")
def make_temporal_flickering(ctx: ScorerContext):
    return Scorer(lambda p, m: Flickering(), {"backend": "pixel MAE (VBench formula)", "proxy": False})


def flow_backend(ctx: ScorerContext):
    """(a new flow backend per video, its label, whether it is a proxy): VBench's RAFT when
    ``--weights`` holds ``raft-things.pth``, else OpenCV's flow at shorter side FLOW_SIDE."""
    from .raft import RAFT_FILES

    found = weight_file(ctx, RAFT_FILES)
    if found:
        from .learned import raft_flow

        flow = raft_flow(found, ctx.device)
        return (lambda: flow), f"RAFT from {found.name} at full resolution", False
    _cv2()
    method = ctx.options.get("flow", "dis")
    return (
        (lambda: Flow(method)),
        f"opencv-{method} optical flow at shorter side {FLOW_SIDE}, vectors that do not "
        "explain the frames dropped (proxy for RAFT; unreliable on smooth noise of large blobs that "
        "changes every frame, which reads as motion: docs/evaluation-proxies.md)",
        True,
    )


@register("dynamic_degree")
def make_dynamic_degree(ctx: ScorerContext):
    new_flow, label, proxy = flow_backend(ctx)
    return Scorer(lambda p, m: DynamicDegree(m.get("fps"), new_flow()), {"backend": label, "proxy": proxy})


@register("motion_smoothness")
def make_motion_smoothness(ctx: ScorerContext):
    """VBench's AMT-S when ``--weights`` holds ``amt-s.pth``, else flow-warped interpolation."""
    from .amt import AMT_FILES

    found = weight_file(ctx, AMT_FILES)
    if found:
        from .learned import AmtInterpolator

        interp = AmtInterpolator(found, ctx.device)
        return Scorer(lambda p, m: MotionSmoothness(interp), {"backend": f"AMT-S from {found.name}", "proxy": False})
    method = ctx.options.get("flow", "dis")
    _cv2()
    return Scorer(
        lambda p, m: MotionSmoothness(FlowInterpolator(method)),
        {"backend": f"opencv-{method} flow-warped interpolation (proxy for AMT-S)", "proxy": True},
    )


@register("imaging_quality")
def make_imaging_quality(ctx: ScorerContext):
    """MUSIQ when ``--weights`` holds VBench's checkpoint, else the blur/noise proxy."""
    from .musiq import MUSIQ_FILES

    path = weight_file(ctx, MUSIQ_FILES)
    if path:
        from .learned import make_musiq_quality

        return make_musiq_quality(ctx, path)
    _cv2()
    return Scorer(
        lambda p, m: ImagingQuality(),
        {
            "backend": "(1 - blur effect) x 2^(-noise sigma / 8) x naturalness, longer side <= 512 "
            "(proxy for MUSIQ), limits: docs/evaluation-proxies.md",
            "proxy": True,
        },
    )
