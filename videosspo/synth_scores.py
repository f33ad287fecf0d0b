"""The synthetic world's exact scores: ground truth from the caption "a {color} {shape} moving {direction}".

Each frame's object is the largest blob of pixels farther from the background colour (the median
of the frame's border pixels) than 60% of the frame's largest such distance (so the half-blended
edge pixels of mp4's 4:2:0 chroma are left out); then
- colour accuracy: fraction of frames whose object's median colour is nearest the named colour
  among ``videosspo.synth.COLORS``;
- shape accuracy: fraction of frames whose largest blob's bounding-box fill ratio is nearest the
  named shape's, the references being the generator's own shape stamps at the blob's size
  (about 1 square, pi/4 circle, 1/2 triangle);
- direction accuracy: 1 if the centroid's first -> last displacement points (max cosine) along the
  named direction of ``DIRECTIONS`` and moves at least one pixel, else 0;
- persistence: fraction of frames with exactly one blob whose area is within 30% of the clip's
  median area (the object stays one object of constant size).
On lossless frames the generator's clips score exactly 1; through mp4, objects under ~10 px can lose
or gain an edge row of chroma-blurred pixels, which lowers shape and persistence scores slightly.

`benchmarks/vbench/synthetic.py` registers them as VBench dimensions; the demo scores its clips with them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from videosspo.synth import SHAPES, shape_stamp

EDGE_FRACTION = 0.6  # object pixels: farther from the background than this fraction of the max
MIN_CONTRAST = 40.0  # RGB distance from the background below which a frame has no object
SPECK_FRACTION = 0.05  # blobs smaller than this fraction of the largest are compression noise
AREA_TOLERANCE = 0.3  # persistence: allowed relative deviation from the median area
MIN_DISPLACEMENT = 1.0  # pixels the centroid must move to have a direction


@dataclass
class Blob:
    """The object in one frame: its mask stats and the number of significant blobs."""

    area: int
    fill: float  # area / bounding-box area
    size: int  # longer side of the bounding box
    centroid: tuple[float, float]
    color: np.ndarray
    count: int


def background_color(frame: np.ndarray) -> np.ndarray:
    """Median colour of the frame's border pixels."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    return np.median(border.astype(np.float32), axis=0)


def find_blob(frame: np.ndarray) -> Blob | None:
    """The largest non-background connected component of a frame, or None if there is none."""
    import cv2

    dist = np.linalg.norm(frame.astype(np.float32) - background_color(frame), axis=-1)
    if dist.max() < MIN_CONTRAST:
        return None
    mask = (dist > EDGE_FRACTION * dist.max()).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    k = int(np.argmax(areas)) + 1
    x, y, w, h, area = stats[k]
    return Blob(
        area=int(area),
        fill=float(area) / float(w * h),
        size=int(max(w, h)),
        centroid=tuple(cents[k]),
        color=np.median(frame[labels == k].astype(np.float32), axis=0),
        count=int((areas >= SPECK_FRACTION * areas.max()).sum()),
    )


def nearest(value, table: dict) -> str:
    """Key of ``table`` whose value is nearest ``value`` (Euclidean)."""
    return min(table, key=lambda k: float(np.linalg.norm(np.asarray(table[k], float) - value)))


def color_accuracy(blobs, color: str, colors: dict) -> float:
    return float(np.mean([b is not None and nearest(b.color, colors) == color for b in blobs]))


@functools.cache
def reference_fills(size: int) -> dict[str, float]:
    """Tight-bounding-box fill ratio of each of the generator's shape stamps at ``size`` pixels."""
    fills = {}
    for shape in SHAPES:
        stamp = shape_stamp(shape, size)
        rows, cols = np.flatnonzero(stamp.any(1)), np.flatnonzero(stamp.any(0))
        fills[shape] = float(stamp.sum()) / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    return fills


def shape_accuracy(blobs, shape: str) -> float:
    return float(np.mean([b is not None and nearest(b.fill, reference_fills(b.size)) == shape for b in blobs]))


def direction_accuracy(blobs, direction: str, directions: dict) -> float:
    first, last = blobs[0], blobs[-1]
    if first is None or last is None:
        return 0.0
    d = np.subtract(last.centroid, first.centroid)
    if np.linalg.norm(d) < MIN_DISPLACEMENT:
        return 0.0
    cosine = {k: float(np.dot(d, v) / np.linalg.norm(v)) for k, v in directions.items()}
    return float(max(cosine, key=cosine.get) == direction)


def persistence(blobs) -> float:
    areas = [b.area for b in blobs if b is not None]
    if not areas:
        return 0.0
    med = float(np.median(areas))
    return float(np.mean([b is not None and b.count == 1 and abs(b.area - med) <= AREA_TOLERANCE * med for b in blobs]))


def score_blobs(blobs: list, attrs: dict, colors: dict, directions: dict) -> dict[str, float]:
    """All four synthetic scores of one clip's per-frame blobs against parsed caption attributes."""
    out = {
        "synthetic_color": color_accuracy(blobs, attrs["color"], colors),
        "synthetic_shape": shape_accuracy(blobs, attrs["shape"]),
    }
    if len(blobs) > 1:
        out["synthetic_direction"] = direction_accuracy(blobs, attrs["direction"], directions)
        out["synthetic_persistence"] = persistence(blobs)
    return out


def score_clip(video: np.ndarray, attrs: dict, colors: dict, directions: dict) -> dict[str, float]:
    """:func:`score_blobs` of a whole clip."""
    return score_blobs([find_blob(f) for f in video], attrs, colors, directions)
