"""Overlays: boxes, scores and the 98 points coloured by region; ground truth with error lines.

All functions return a new (H, W, 3) uint8 RGB image and leave their input untouched. Marker
sizes scale with the face so that a small face is not buried under its own points.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.layout import POINT_REGION, REGION_COLORS

GT_COLOR = (0, 255, 0)        # ground truth: green hollow circles
ERROR_COLOR = (255, 0, 255)   # prediction-to-truth error lines: magenta
BOX_COLOR = (0, 200, 255)
MTCNN_COLOR = (255, 255, 255)


def _size(points: np.ndarray, image_shape) -> float:
    """Characteristic face size in pixels: the larger extent of the points (fallback: image/4)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) and np.all(np.isfinite(pts)):
        extent = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
        if extent > 0:
            return extent
    return max(image_shape[:2]) / 4.0


def _radius(face_size: float) -> int:
    return int(np.clip(round(face_size / 90.0), 1, 6))


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_landmarks(image: np.ndarray, landmarks, labels: bool = False, radius: int | None = None) -> np.ndarray:
    """Filled dots coloured by region for (98, 2) points; ``labels`` writes each index."""
    out = np.array(image, dtype=np.uint8, copy=True)
    pts = np.asarray(landmarks, dtype=np.float64)
    r = radius or _radius(_size(pts, out.shape))
    for i, p in enumerate(pts):
        if not np.all(np.isfinite(p)):
            continue
        cv2.circle(out, _pt(p), r, REGION_COLORS[POINT_REGION[i]], -1, cv2.LINE_AA)
        if labels:
            cv2.putText(out, str(i), (_pt(p)[0] + r + 1, _pt(p)[1]), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.25, r * 0.15), (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_ground_truth(image: np.ndarray, ground_truth, prediction=None) -> np.ndarray:
    """Ground truth as green rings; with ``prediction``, a magenta line from each predicted point
    to its true position (the error vector)."""
    out = np.array(image, dtype=np.uint8, copy=True)
    gt = np.asarray(ground_truth, dtype=np.float64)
    r = _radius(_size(gt, out.shape))
    if prediction is not None:
        for p, g in zip(np.asarray(prediction, dtype=np.float64), gt):
            if np.all(np.isfinite(p)) and np.all(np.isfinite(g)):
                cv2.line(out, _pt(p), _pt(g), ERROR_COLOR, 1, cv2.LINE_AA)
    for g in gt:
        if np.all(np.isfinite(g)):
            cv2.circle(out, _pt(g), r + 1, GT_COLOR, 1, cv2.LINE_AA)
    return out


# Box line width and label size grow with the box: one pixel of line per this many pixels of box side.
BOX_PX_PER_LINE = 150.0
# A box belongs to a row of faces when this share of its height overlaps the row (reading_order).
ROW_OVERLAP = 0.5
# Score decimals on the image and in tables: 3 tells 0.994 from 1.000 (2 decimals showed "1").
SCORE_DECIMALS = 3


def reading_order(boxes) -> list[int]:
    """Indices of (F, 4) xyxy boxes in reading order: rows top to bottom, left to right in a row.

    Boxes are taken by their vertical centre; a box joins the current row when at least half of
    its height lies within the row's vertical extent so far (the faces of one row in a group photo
    sit at slightly different heights and sizes), else it starts the next row.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    rows: list[tuple[list[int], float, float]] = []  # (members, top, bottom)
    for i in np.argsort((boxes[:, 1] + boxes[:, 3]) / 2, kind="stable"):
        top, bottom = boxes[i, 1], boxes[i, 3]
        if rows:
            members, row_top, row_bottom = rows[-1]
            if min(bottom, row_bottom) - max(top, row_top) >= ROW_OVERLAP * (bottom - top):
                rows[-1] = (members + [int(i)], min(top, row_top), max(bottom, row_bottom))
                continue
        rows.append(([int(i)], top, bottom))
    return [i for members, _, _ in rows for i in sorted(members, key=lambda k: boxes[k, 0])]


def box_label(number: int | None, score: float | None) -> str | None:
    """``"#2 0.994"``: the face's number and its detector score (either may be left out)."""
    parts = ([] if number is None else [f"#{number}"]) + ([] if score is None else [f"{score:.{SCORE_DECIMALS}f}"])
    return " ".join(parts) or None


def draw_box(image: np.ndarray, box, score: float | None = None, text: str | None = None) -> np.ndarray:
    """A face box with its score (or any text) above it."""
    out = np.array(image, dtype=np.uint8, copy=True)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    thickness = max(1, int(round(max(x2 - x1, y2 - y1) / BOX_PX_PER_LINE)))
    cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOR, thickness, cv2.LINE_AA)
    label = text if text is not None else box_label(None, score)
    if label:
        scale = max(0.5, thickness * 0.5)  # OpenCV font scale: about 11 px tall at 0.5, legible on group photos
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_COLOR,
                    thickness, cv2.LINE_AA)
    return out


def draw_faces(image: np.ndarray, faces: Sequence, labels: bool = False, ground_truth: Sequence | None = None,
               show_boxes: bool = True, numbers: Sequence[int] | None = None) -> np.ndarray:
    """Boxes, scores and landmarks of every ``Face``; ``ground_truth`` is one (98, 2) array (or
    ``None``) per face, drawn in the ground-truth style with error lines; ``numbers`` (one per
    face) are written on the boxes before the scores."""
    out = np.array(image, dtype=np.uint8, copy=True)
    for i, face in enumerate(faces):
        if show_boxes:
            out = draw_box(out, face.box, text=box_label(None if numbers is None else numbers[i], face.score))
        gt = ground_truth[i] if ground_truth is not None and i < len(ground_truth) else None
        if gt is not None:
            out = draw_ground_truth(out, gt, face.landmarks)
        out = draw_landmarks(out, face.landmarks, labels=labels)
    return out


def draw_detections(image: np.ndarray, detections, numbers: Sequence[int] | None = None) -> np.ndarray:
    """Detector-only view (no 98-point model): each box with its number and score, and MTCNN's five points."""
    out = np.array(image, dtype=np.uint8, copy=True)
    for i, (box, score) in enumerate(zip(detections.boxes, detections.scores)):
        out = draw_box(out, box, text=box_label(None if numbers is None else numbers[i], float(score)))
    return draw_five_points(out, detections.points)


def draw_five_points(image: np.ndarray, points) -> np.ndarray:
    """MTCNN's five points (F, 5, 2) as white crosses: what is shown when no 98-point model is loaded."""
    out = np.array(image, dtype=np.uint8, copy=True)
    for face_points in np.asarray(points, dtype=np.float64).reshape(-1, 5, 2):
        size = max(3, int(_size(face_points, out.shape) / 12))
        for p in face_points:
            cv2.drawMarker(out, _pt(p), MTCNN_COLOR, cv2.MARKER_CROSS, size, 2, cv2.LINE_AA)
    return out
