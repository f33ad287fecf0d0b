"""VBench's rules for its four GRiT dimensions, as pure functions of one video's detections.

A frame's detections are VBench's ``dense_pred_to_caption_tuple``: ``[(description, [x0, y0, x1,
y1], names)]`` by decreasing score, ``names`` being every box's ObjectDet class name (the same
list on each tuple). ``info`` is the prompt's ``auxiliary_info[dimension]`` from
``VBench_full_info.json``. Each rule returns the video's score, or None where VBench leaves the video
out; VBench scores 16 frames of every video (its ``load_video(num_frames=16)``), so its
frame-weighted dimension means equal the mean of these per-video scores.
"""

from __future__ import annotations

import numpy as np

COLOR_WORDS = ("white", "red", "pink", "blue", "silver", "purple", "orange", "green", "gray", "yellow", "black", "grey")
IOU_THRESHOLD = 0.1  # spatial relationship: overlapping boxes score iou_threshold / IoU


def frame_names(frame: list) -> set[str]:
    """The ObjectDet names VBench reads from a frame: the first tuple's ``names`` (none when empty)."""
    return set(frame[0][2]) if frame else set()


def object_class(frames: list[list], info: dict) -> float:
    """Fraction of frames whose names include ``info["object"]`` (exact match)."""
    return float(np.mean([info["object"] in frame_names(f) for f in frames]))


def multiple_objects(frames: list[list], info: dict) -> float:
    """Fraction of frames whose names include both objects of ``info["object"]`` ("a and b")."""
    a, b = (k.strip() for k in info["object"].split(" and "))
    return float(np.mean([a in frame_names(f) and b in frame_names(f) for f in frames]))


def color_object(prompt: str, color: str) -> str:
    """VBench's object of a colour prompt: the prompt without "a ", "an " and the colour, stripped."""
    return prompt.replace("a ", "").replace("an ", "").replace(color, "").strip()


def color(frames: list[list], info: dict, prompt: str) -> float | None:
    """VBench's colour rule on DenseCap detections: in each frame, the pairs (phrase, first box's
    ObjectDet name) whose name is the prompt's object; the frame has the object when one such phrase
    names any colour word, and the colour when one contains ``info["color"]``. Score = colour frames
    / object frames; None (the video is left out) when no frame has the object."""
    target, key = color_object(prompt, info["color"]), info["color"]
    has_object = has_color = 0
    for frame in frames:
        pairs = [(d, names[0]) for d, _, names in frame] or [("", "")]
        phrases = [d for d, name in pairs if name == target]
        has_object += any(c in d for d in phrases for c in COLOR_WORDS)
        has_color += any(key in d for d in phrases)
    return has_color / has_object if has_object else None


def position_score(relation: str, box1, box2, iou_threshold: float = IOU_THRESHOLD) -> float:
    """VBench's ``get_position_score``: a left/right relation holds when the centres are further
    apart in x than in y, above/below when further apart in y (the order of the two boxes is never
    checked); 1 if the boxes' IoU < 0.1, else 0.1 / IoU; 0 when the axis is wrong. The relation
    matches when it is a substring of "on the right of" / "on the left of" (or top / bottom)."""
    dx = (box2[0] + box2[2]) / 2 - (box1[0] + box1[2]) / 2
    dy = (box2[1] + box2[3]) / 2 - (box1[1] + box1[3]) / 2
    inter = max(0, min(box1[2], box2[2]) - max(box1[0], box2[0])) * max(
        0, min(box1[3], box2[3]) - max(box1[1], box2[1])
    )
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - inter
    iou = inter / union if union else 0.0  # VBench divides by zero for two empty boxes
    if relation in "on the right of" or relation in "on the left of":
        along = abs(dx) > abs(dy)
    elif relation in "on the bottom of" or relation in "on the top of":
        along = abs(dy) > abs(dx)
    else:
        return 0.0
    return (1.0 if iou < iou_threshold else iou_threshold / iou) if along else 0.0


def spatial_frame(frame: list, info: dict) -> float:
    """One frame: the best ``position_score`` over pairs of boxes described exactly as object_a or
    object_b (two boxes of the same object count), 0 with fewer than two."""
    boxes = [box for d, box, _ in frame if d in (info["object_a"], info["object_b"])]
    return max(
        [0.0]
        + [
            position_score(info["relationship"], boxes[i], boxes[j])
            for i in range(len(boxes))
            for j in range(i + 1, len(boxes))
        ]
    )


def spatial_relationship(frames: list[list], info: dict) -> float:
    """Mean over frames of ``spatial_frame`` on ``info["spatial_relationship"]`` (object_a,
    object_b, relationship)."""
    return float(np.mean([spatial_frame(f, info["spatial_relationship"]) for f in frames]))
