"""Weight-free dimensions: temporal flickering (exact), dynamic degree and motion smoothness with
classical optical flow, imaging quality with BRISQUE (a proxy for MUSIQ)."""
from __future__ import annotations

import numpy as np

from .scorers import ScorerContext, Unavailable, register


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames on 0..255, over pixels and channels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def temporal_flickering_score(video: np.ndarray) -> float | None:
    """VBench: (255 - mean_i MAE(frame_i, frame_i+1)) / 255; None for a single frame."""
    if len(video) < 2:
        return None
    return (255.0 - float(np.mean([_mae(a, b) for a, b in zip(video[:-1], video[1:])]))) / 255.0


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise Unavailable("OpenCV is not installed", "pip install opencv-python-headless") from e
    return cv2


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow (h, w, 2) from RGB frame ``a`` to ``b`` with OpenCV DIS or Farneback (no weights)."""
    cv2 = _cv2()
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(ga, gb, None)


def top5_flow_magnitude(flow: np.ndarray) -> float:
    """VBench's per-pair statistic: mean of the largest 5% of flow magnitudes."""
    rad = np.sqrt((flow ** 2).sum(-1)).ravel()
    cut = max(int(rad.size * 0.05), 1)
    return float(np.sort(rad)[::-1][:cut].mean())


def dynamic_degree_score(video: np.ndarray, fps: float | None = None, method: str = "dis") -> float | None:
    """VBench: frames sampled at ~8 fps; 1.0 if at least round(4 n / 16) consecutive pairs have a
    top-5% flow magnitude above 6 * min(H, W) / 256, else 0.0."""
    frames = video[:: max(round(fps / 8), 1)] if fps else video
    if len(frames) < 2:
        return None
    thres = 6.0 * min(frames.shape[1:3]) / 256.0
    count_num = round(4 * len(frames) / 16.0)
    moving = sum(top5_flow_magnitude(optical_flow(a, b, method)) > thres
                 for a, b in zip(frames[:-1], frames[1:]))
    return float(moving >= count_num)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp ``img`` by ``flow``: out(x) = img(x + flow(x)), bilinear."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate_midpoint(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow-warped midpoint of two frames (Super-SloMo's linear flow approximation at t = 1/2)."""
    f_ab, f_ba = optical_flow(a, b, method), optical_flow(b, a, method)
    f_ta = -0.25 * f_ab + 0.25 * f_ba  # flow from the midpoint back to a
    f_tb = 0.25 * f_ab - 0.25 * f_ba  # flow from the midpoint on to b
    mid = 0.5 * (_warp(a, f_ta).astype(np.float32) + _warp(b, f_tb).astype(np.float32))
    return np.clip(np.rint(mid), 0, 255).astype(np.uint8)


def motion_smoothness_score(video: np.ndarray, method: str = "dis") -> float | None:
    """VBench's protocol with a classical interpolator: interpolate the odd frames from the even
    ones, score (255 - mean MAE(real odd, interpolated odd)) / 255."""
    even, odd = video[0::2], video[1::2]
    pairs = min(len(even) - 1, len(odd))
    if pairs < 1:
        return None
    maes = [_mae(odd[i], interpolate_midpoint(even[i], even[i + 1], method)) for i in range(pairs)]
    return (255.0 - float(np.mean(maes))) / 255.0


def brisque_score(frame: np.ndarray, model) -> float:
    """BRISQUE of one RGB frame (lower is better, ~0..100). Flattens the features to scalars first:
    ``brisque`` 0.2.0's own ``score`` breaks on numpy 2."""
    import cv2
    from skimage.color import rgb2gray

    gray = rgb2gray(frame)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    feats = [*model.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6),
             *model.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)]
    return float(model.calculate_image_quality_score(np.array([float(np.ravel(f)[0]) for f in feats])))


def brisque_to_unit(score: float) -> float:
    """Map BRISQUE (0 best, ~100 worst) onto VBench's 0..1 higher-is-better scale: clip((100 - s)/100)."""
    return float(np.clip((100.0 - score) / 100.0, 0.0, 1.0))


def _per_video(fn, info):
    """Wrap a per-video function into a scorer ``(videos, prompts, meta) -> (scores, info)``."""

    def scorer(videos, prompts, meta):
        return [fn(v, m) for v, m in zip(videos, meta)], dict(info)

    return scorer


@register("temporal_flickering")
def make_temporal_flickering(ctx: ScorerContext):
    return _per_video(lambda v, m: temporal_flickering_score(v),
                      {"backend": "pixel MAE (VBench formula)", "proxy": False})


@register("dynamic_degree")
def make_dynamic_degree(ctx: ScorerContext):
    method = ctx.options.get("flow", "dis")
    _cv2()
    return _per_video(lambda v, m: dynamic_degree_score(v, m.get("fps"), method),
                      {"backend": f"opencv-{method} optical flow (proxy for RAFT)", "proxy": True})


@register("motion_smoothness")
def make_motion_smoothness(ctx: ScorerContext):
    method = ctx.options.get("flow", "dis")
    _cv2()
    return _per_video(lambda v, m: motion_smoothness_score(v, method),
                      {"backend": f"opencv-{method} flow-warped interpolation (proxy for AMT-S)",
                       "proxy": True})


@register("imaging_quality")
def make_imaging_quality(ctx: ScorerContext):
    try:
        from brisque import BRISQUE
        import skimage  # noqa: F401
    except ImportError as e:
        raise Unavailable("the brisque proxy needs `brisque` and `scikit-image`",
                          "pip install brisque scikit-image (or --backend official for MUSIQ)") from e
    model = []  # loaded on first call

    def score(video, meta):
        if not model:
            model.append(BRISQUE(url=False))
        return float(np.mean([brisque_to_unit(brisque_score(f, model[0])) for f in video]))

    return _per_video(score, {"backend": "brisque 0.2.0, clip((100 - BRISQUE)/100) (proxy for MUSIQ)",
                              "proxy": True})
