"""Crop geometry: boxes to square crops, the image -> crop affine map, and point mapping.

Pure numpy (plus ``cv2.warpAffine`` for sampling). Coordinates are pixels, x to the right and y
down; a (2, 3) matrix ``M`` maps a point p as ``M[:, :2] @ p + M[:, 2]``.
"""
from __future__ import annotations

import cv2
import numpy as np

from model.constants import CROP_PADDING, INPUT_SIZE


def _as_box(box_xyxy) -> np.ndarray:
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {box_xyxy!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {box.tolist()}")
    return box


def box_to_crop(box_xyxy, padding: float = CROP_PADDING) -> tuple[np.ndarray, float]:
    """Square crop around a box.

    Args:
        box_xyxy: (4,) x1, y1, x2, y2 in image pixels.
        padding: the crop side is ``padding`` times the longer box side.

    Returns:
        center (2,) float64 image pixels, side float pixels.
    """
    box = _as_box(box_xyxy)
    center = (box[:2] + box[2:]) / 2.0
    side = float(padding * max(box[2] - box[0], box[3] - box[1]))
    return center, side


def landmark_box(landmarks) -> np.ndarray:
    """Tight (4,) xyxy box around (K, 2) points: the box mmpose's WFLW evaluation crops start from."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"landmarks must have shape (K, 2), got {pts.shape}")
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def crop_matrix(center, side: float, rotation: float = 0.0, output_size: int = INPUT_SIZE) -> np.ndarray:
    """Affine map (2, 3) from image pixels to crop pixels.

    Sends ``center`` to (output_size / 2, output_size / 2), scales by ``output_size / side`` and
    rotates by ``rotation`` degrees, positive = counter-clockwise on screen (the convention of
    ``cv2.getRotationMatrix2D``).
    """
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center must be 2 finite numbers, got {center!r}")
    if not np.isfinite(side) or side <= 0:
        raise ValueError(f"side must be a positive number of pixels, got {side!r}")
    scale = output_size / float(side)
    theta = np.deg2rad(rotation)
    a, b = scale * np.cos(theta), scale * np.sin(theta)
    half = output_size / 2.0
    return np.array(
        [[a, b, half - a * c[0] - b * c[1]],
         [-b, a, half + b * c[0] - a * c[1]]],
        dtype=np.float64,
    )


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a (2, 3) affine map, as a (2, 3) matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3), got {m.shape}")
    lin_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([lin_inv, -lin_inv @ m[:, 2:]], axis=1)


def apply_affine(points, matrix) -> np.ndarray:
    """Map (..., 2) points with a (2, 3) matrix; returns float64 of the same shape."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    if pts.shape[-1] != 2:
        raise ValueError(f"points must have a last dimension of 2, got shape {pts.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def warp_crop(image: np.ndarray, matrix, size: int = INPUT_SIZE) -> np.ndarray:
    """Sample the (size, size) crop that ``matrix`` maps the image onto: bilinear, black border."""
    return cv2.warpAffine(
        image, np.asarray(matrix, dtype=np.float64), (int(size), int(size)),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def box_iou(box, boxes) -> np.ndarray:
    """Intersection over union of one (4,) xyxy box with (M, 4) boxes -> (M,) in [0, 1]."""
    a = np.asarray(box, dtype=np.float64).reshape(4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:2], b[:, :2])
    hi = np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    union = np.prod(a[2:] - a[:2]) + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# Two boxes of one face overlap at least this much (IoU): MTCNN's box against a landmark extent or an
# annotated rectangle differs in shape and margin, so the bar sits well below the usual 0.5.
MATCH_MIN_IOU = 0.3


def match_boxes(boxes, targets, min_iou: float = MATCH_MIN_IOU) -> list[int | None]:
    """Pair each of (F, 4) ``boxes`` with the index of a (T, 4) ``targets`` box, greedily by IoU
    (highest first), each target used once; ``None`` where no free target overlaps by ``min_iou``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 4)
    overlaps = np.array([box_iou(b, targets) for b in boxes]).reshape(len(boxes), len(targets))
    matched: list[int | None] = [None] * len(boxes)
    for flat in np.argsort(-overlaps, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(targets))
        if overlaps[i, j] < min_iou:
            break
        if matched[i] is None and j not in matched:
            matched[i] = j
    return matched
