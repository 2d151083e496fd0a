"""Overlays: boxes, numbered labels and the 98 points coloured by region; ground truth with error lines.

All functions return a new (H, W, 3) uint8 RGB image and leave their input untouched.

Two kinds of size:
- Boxes, labels and MTCNN's five points are sized for the image as it is displayed (``DrawScale``,
  from the image size only), so a webcam overlay keeps one scale however the face moves, and a
  label on a 4000 px group photo is as legible on screen as on a 640 px frame.
- The 98 points scale with their face (a small face is not buried under its own points), smoothly:
  radii are drawn with sub-pixel precision, so they never jump from one pixel size to the next.

The colour legend (ground truth, prediction, error, boxes, five points) is defined once here:
``LEGEND``; every view (upload, WFLW browser, review editor) draws and explains with it.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from model.geometry import apply_affine
from model.layout import POINT_REGION, REGION_COLORS

# ------------------------------------------------------------------ colours and legend (one home)

GT_COLOR = (0, 255, 0)        # ground truth: green hollow rings
ERROR_COLOR = (255, 0, 255)   # prediction-to-truth error lines: magenta
BOX_COLOR = (0, 200, 255)     # face boxes and their number badges
MTCNN_COLOR = (255, 255, 255)  # MTCNN's five points: white crosses ...
OUTLINE_COLOR = (0, 0, 0)      # ... outlined in black, visible on light and dark skin
LABEL_BACK_COLOR = (24, 24, 24)  # backing of the score beside a number badge
# Predicted points: filled dots in their region's colour (``model.layout.REGION_COLORS``), one per point.
PRED_POINT_COLORS: tuple[tuple[int, int, int], ...] = tuple(REGION_COLORS[r] for r in POINT_REGION)


def css_hex(rgb) -> str:
    """``(0, 255, 0)`` -> ``"#00ff00"``: an RGB colour (three ints in 0..255) for CSS and SVG.

    Raises:
        ValueError: not three integers in 0..255.
    """
    values = tuple(rgb)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise ValueError(f"css_hex: expected three integers in 0..255, got {rgb!r}")
    return "#" + "".join(f"{int(v):02x}" for v in values)


class LegendEntry(NamedTuple):
    """One line of the legend: what it shows, its colour, how it is drawn and how the text says it."""

    name: str
    rgb: tuple[int, int, int]
    css: str    # the same colour as CSS hex
    mark: str   # "ring", "dot", "line", "box" or "cross"
    words: str  # the drawing in words, for views without swatches: "green rings"


def _prediction_entries() -> list[LegendEntry]:
    """One entry per distinct region colour: "Prediction: eye" for right_eye and left_eye."""
    names: dict[tuple[int, int, int], list[str]] = {}
    for region, rgb in REGION_COLORS.items():
        name = region.removeprefix("right_").removeprefix("left_").replace("_", " ")
        if name not in names.setdefault(rgb, []):
            names[rgb].append(name)
    return [LegendEntry("Prediction: " + " / ".join(n), rgb, css_hex(rgb), "dot", "dots in region colours")
            for rgb, n in names.items()]


LEGEND: tuple[LegendEntry, ...] = (
    LegendEntry("Ground truth", GT_COLOR, css_hex(GT_COLOR), "ring", "green rings"),
    *_prediction_entries(),
    LegendEntry("Error (prediction to ground truth)", ERROR_COLOR, css_hex(ERROR_COLOR), "line", "magenta lines"),
    LegendEntry("Face box and number", BOX_COLOR, css_hex(BOX_COLOR), "box", "sky-blue boxes"),
    LegendEntry("MTCNN five points (no 98-point model)", MTCNN_COLOR, css_hex(MTCNN_COLOR), "cross",
                "white crosses"),
)


def legend_words() -> dict[str, str]:
    """The landmark part of ``LEGEND`` in words, for views that show no swatches (an image's label,
    a summary line, the review editor's toggles): {"gt": "ground truth (green rings)", "pred": ...,
    "error": ...}."""
    by_mark = {e.mark: e for e in LEGEND}
    return {"gt": f"ground truth ({by_mark['ring'].words})", "pred": f"prediction ({by_mark['dot'].words})",
            "error": f"error ({by_mark['line'].words})"}


# The words of ``legend_words`` on one line.
LEGEND_TEXT = " · ".join(legend_words().values())


def legend_html(entries: Sequence[LegendEntry] = LEGEND) -> str:
    """The legend as one line of HTML (a coloured swatch before each name), for ``gr.HTML``/Markdown."""
    swatch = {"ring": "border:2px solid {c};border-radius:50%;", "dot": "background:{c};border-radius:50%;",
              "line": "background:{c};height:3px;", "box": "border:2px solid {c};",
              "cross": "background:{c};outline:1px solid #000;"}
    items = []
    for e in entries:
        style = swatch.get(e.mark, "background:{c};").format(c=e.css)
        items.append(f'<span class="ls-legend-item" style="margin-right:1em;white-space:nowrap">'
                     f'<span style="display:inline-block;width:10px;height:10px;margin-right:4px;'
                     f'vertical-align:middle;{style}"></span>{html.escape(e.name)}</span>')
    return f'<div class="ls-legend">{"".join(items)}</div>'


# ------------------------------------------------------------------ sizes for the displayed image

# The app shows images in a box about this size (the upload tab's gr.Image takes its height from
# DISPLAY_HEIGHT, in a column about 640 px wide); drawing sizes are chosen for that view, never below 1:1.
DISPLAY_HEIGHT = 440
DISPLAY_WIDTH = 640
LABEL_SCREEN_PX = 11    # digit height of labels on screen
BOX_SCREEN_PX = 1.2     # box line width on screen
MARKER_SCREEN_PX = 9    # five-point cross length on screen (at most a third of the face's five-point extent)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_DIGIT_PX = 22      # Hershey simplex digits are 22 px tall at font scale 1 (measured)
# Score decimals on the image and in tables: 3 tells 0.994 from 1.000 (2 decimals showed "1").
SCORE_DECIMALS = 3


@dataclass(frozen=True)
class DrawScale:
    """Sizes in image pixels for boxes, labels and five-point markers on one image size."""

    line: int          # box line width
    text_px: int       # label digit height
    font: float        # OpenCV font scale giving ``text_px``
    text_line: int     # label stroke width
    pad: int           # label padding, and the gap between number badge and score
    marker: float      # five-point cross length (before the per-face cap)
    marker_line: int   # five-point cross stroke width (the black outline adds half of it each side)


def drawing_scale(image_shape, display_height: int = DISPLAY_HEIGHT, display_width: int = DISPLAY_WIDTH) -> DrawScale:
    """Sizes for an image of ``image_shape`` (H, W, ...) shown in a ``display_width`` x
    ``display_height`` box: labels ``LABEL_SCREEN_PX`` tall on screen, whatever the image size.

    Depends on the image size only, so every frame of a stream is drawn at one scale.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if height <= 0 or width <= 0 or display_height <= 0 or display_width <= 0:
        raise ValueError(f"drawing_scale: image {height}x{width} and display {display_width}x{display_height} "
                         "must be positive")
    per_screen_px = max(1.0, height / display_height, width / display_width)  # image px per screen px
    text_px = max(8, round(LABEL_SCREEN_PX * per_screen_px))
    return DrawScale(line=max(1, round(BOX_SCREEN_PX * per_screen_px)), text_px=text_px,
                     font=text_px / FONT_DIGIT_PX, text_line=max(1, round(text_px / 12)),
                     pad=max(2, round(text_px / 5)), marker=MARKER_SCREEN_PX * per_screen_px,
                     marker_line=max(2, round(1.25 * per_screen_px)))


# ------------------------------------------------------------------ landmarks and ground truth

def _size(points: np.ndarray, image_shape) -> float:
    """Characteristic face size in pixels: the larger extent of the points (fallback: image/4)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) and np.all(np.isfinite(pts)):
        extent = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
        if extent > 0:
            return extent
    return max(image_shape[:2]) / 4.0


def _radius(face_size: float) -> float:
    """Point radius for a face of ``face_size`` px: one pixel per 90 px of face, 1 to 6 px."""
    return float(np.clip(face_size / 90.0, 1.0, 6.0))


def landmark_radius(landmarks, image_shape) -> float:
    """Dot radius in pixels of one face's (98, 2) points on an image of ``image_shape``: what
    ``draw_landmarks`` draws, for overlays drawn elsewhere (the webcam's canvas)."""
    return _radius(_size(landmarks, image_shape))


def five_point_size(points, image_shape, scale: DrawScale | None = None) -> int:
    """Cross length in pixels of one face's (5, 2) MTCNN points: ``MARKER_SCREEN_PX`` on screen, at
    most a third of the points' extent (crosses of a small face do not merge)."""
    scale = scale or drawing_scale(image_shape)
    return max(5, int(round(min(scale.marker, _size(points, image_shape) / 3))))


SUBPIXEL_BITS = 4  # cv2 drawing with ``shift``: centres and radii in 1/16 px, so sizes change smoothly


def _circle(out: np.ndarray, p, radius: float, color, thickness: int) -> None:
    one = 1 << SUBPIXEL_BITS
    centre = (int(round(float(p[0]) * one)), int(round(float(p[1]) * one)))
    cv2.circle(out, centre, int(round(radius * one)), color, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_landmarks(image: np.ndarray, landmarks, labels: bool = False, radius: float | None = None) -> np.ndarray:
    """Filled dots coloured by region for (98, 2) points; ``labels`` writes each index."""
    out = np.array(image, dtype=np.uint8, copy=True)
    pts = np.asarray(landmarks, dtype=np.float64)
    r = radius or _radius(_size(pts, out.shape))
    for i, p in enumerate(pts):
        if not np.all(np.isfinite(p)):
            continue
        _circle(out, p, r, PRED_POINT_COLORS[i], -1)
        if labels:
            cv2.putText(out, str(i), (_pt(p)[0] + round(r) + 1, _pt(p)[1]), FONT,
                        max(0.25, r * 0.15), (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_ground_truth(image: np.ndarray, ground_truth, prediction=None) -> np.ndarray:
    """Ground truth as rings in ``GT_COLOR``; with ``prediction``, a line in ``ERROR_COLOR`` from each
    predicted point to its true position (the error vector)."""
    out = np.array(image, dtype=np.uint8, copy=True)
    gt = np.asarray(ground_truth, dtype=np.float64)
    r = _radius(_size(gt, out.shape))
    if prediction is not None:
        for p, g in zip(np.asarray(prediction, dtype=np.float64), gt):
            if np.all(np.isfinite(p)) and np.all(np.isfinite(g)):
                cv2.line(out, _pt(p), _pt(g), ERROR_COLOR, 1, cv2.LINE_AA)
    for g in gt:
        if np.all(np.isfinite(g)):
            _circle(out, g, r + 1, GT_COLOR, 1)
    return out


# ------------------------------------------------------------------ labels: text and placement

def label_segments(number: int | None, score: float | None = None, text: str | None = None) -> tuple[str, ...]:
    """The separately drawn pieces of a box label: ``("#2", "0.994")``; ``text`` replaces the score.

    The number is drawn in a filled badge and the score beside it with a gap, so "#1" and "1.000"
    never run together into "#11.000".
    """
    tail = text if text is not None else (None if score is None else f"{score:.{SCORE_DECIMALS}f}")
    return tuple(s for s in (None if number is None else f"#{number}", tail) if s)


class LabelBox(NamedTuple):
    """A placed label: its rectangle (x1, y1, x2, y2, image pixels, end exclusive) and its pieces."""

    rect: tuple[int, int, int, int]
    segments: tuple[str, ...]
    box_index: int
    numbered: bool  # the first segment is a number badge


def _segment_widths(segments: Sequence[str], scale: DrawScale) -> list[int]:
    return [cv2.getTextSize(s, FONT, scale.font, scale.text_line)[0][0] + 2 * scale.pad for s in segments]


def _label_size(segments: Sequence[str], scale: DrawScale) -> tuple[int, int]:
    widths = _segment_widths(segments, scale)
    return sum(widths) + scale.pad * (len(widths) - 1), scale.text_px + 2 * scale.pad


LABEL_LEVELS = 4  # placement tries rows of labels this far above and below a box


def _candidates(box, size, image_shape, scale: DrawScale, far: bool) -> list[tuple[int, int, int, int]]:
    """Label rectangles around ``box`` in order of preference, each moved inside the image: next to
    the box (above, below, inside its top), or with ``far`` rows further above and below."""
    (x1, y1, x2, y2), (w, h) = box, size
    height, width = image_shape[:2]
    step = h + scale.line
    xs = (x1, (x1 + x2 - w) / 2, x2 - w, x1 - w / 2, x2 - w / 2)
    if far:
        levels = range(1, LABEL_LEVELS + 1)
        rows = [y for level in levels for y in (y1 - h - level * step, y2 + scale.line + level * step)]
        spots = [(x, y) for y in rows for x in xs]
    else:
        spots = [(x, y) for y in (y1 - h, y2 + scale.line) for x in xs] + [(x1 + scale.line, y1 + scale.line)]
    rects = []
    for x, y in spots:
        x = int(round(min(max(x, 0), max(width - w, 0))))
        y = int(round(min(max(y, 0), max(height - h, 0))))
        rects.append((x, y, x + w, y + h))
    return rects


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _place(image_shape, face_rects, labels, scale: DrawScale, strict: bool) -> list | None:
    """Greedy placement (see ``layout_labels``): per label its (rect, segments) or ``None``.

    ``strict``: next to its box, clear of other labels and of other faces' boxes, or give up (``None``).
    Else: next to the box, then further rows; clear of boxes if possible, of labels if possible.
    """
    placed: list = []
    for i, segments in enumerate(labels):
        if not segments:
            placed.append(None)
            continue
        taken = [p[0] for p in placed if p is not None]
        others = face_rects[:i] + face_rects[i + 1:]
        size = _label_size(segments, scale)
        near, far = (_candidates(face_rects[i], size, image_shape, scale, far=f) for f in (False, True))
        tiers = [near] if strict else [near, far]
        choice = None
        for rects in tiers:
            free = [r for r in rects if not any(_overlap(r, t) for t in taken)]
            clear = [r for r in free if not any(_overlap(r, o) for o in others)]
            if clear or (free and not strict):
                choice = (clear or free)[0]
                break
        if choice is None:
            if strict:
                return None
            choice = min(near + far, key=lambda r: sum(_overlap(r, t) for t in taken))  # the least covered
        placed.append((choice, segments))
    return placed


def layout_labels(image_shape, boxes, labels: Sequence[Sequence[str]], scale: DrawScale | None = None,
                  numbered: bool = True) -> list[LabelBox | None]:
    """Place one label per box, greedily in the given order, inside the image and clear of the
    labels placed before it.

    Whole labels (number and score) are kept when every one fits next to its own box (above,
    below, or inside its top) without covering another label or another face. Otherwise (a
    crowded group photo) every label is cut to its first segment, the number (the table still
    lists the scores), and placed next to its box where free, else in a row further above or
    below (drawn with a leader line), preferring places that cover no other face.

    Args:
        image_shape: (H, W, ...) of the image drawn on.
        boxes: (F, 4) xyxy image pixels.
        labels: per box, the segments (``label_segments``); empty for no label.
        numbered: the first segment of each label is a number badge.
    Returns:
        Per box, its ``LabelBox`` or ``None`` (no label).
    """
    scale = scale or drawing_scale(image_shape)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(labels) != len(boxes):
        raise ValueError(f"layout_labels: {len(labels)} labels for {len(boxes)} boxes")
    face_rects = [tuple(int(round(v)) for v in b) for b in boxes]
    labels = [tuple(segments) for segments in labels]
    placed = _place(image_shape, face_rects, labels, scale, strict=True)
    if placed is None:
        placed = _place(image_shape, face_rects, [s[:1] for s in labels], scale, strict=False)
    return [None if p is None else LabelBox(p[0], p[1], i, numbered) for i, p in enumerate(placed)]


def _draw_label(out: np.ndarray, label: LabelBox, scale: DrawScale) -> None:
    """A number badge (filled ``BOX_COLOR``, dark digits), then each further piece on a dark backing."""
    x, y1, _, y2 = label.rect
    for k, (segment, w) in enumerate(zip(label.segments, _segment_widths(label.segments, scale))):
        badge = k == 0 and label.numbered
        cv2.rectangle(out, (x, y1), (x + w - 1, y2 - 1), BOX_COLOR if badge else LABEL_BACK_COLOR, -1)
        cv2.putText(out, segment, (x + scale.pad, y2 - scale.pad), FONT, scale.font,
                    OUTLINE_COLOR if badge else BOX_COLOR, scale.text_line, cv2.LINE_AA)
        x += w + scale.pad


def _leader(out: np.ndarray, box, rect, scale: DrawScale) -> None:
    """A thin line from a label placed away from its box to the box's nearer edge."""
    x1, y1, x2, y2 = box
    below = rect[1] >= y2
    if rect[3] >= y1 - scale.line and rect[1] <= y2 + 2 * scale.line:
        return  # touching the box or inside it
    cx = int(round(min(max((rect[0] + rect[2]) / 2, x1), x2)))
    start = (int(round((rect[0] + rect[2]) / 2)), rect[1] if below else rect[3] - 1)
    cv2.line(out, start, (cx, int(round(y2 if below else y1))), BOX_COLOR, max(1, scale.line // 2), cv2.LINE_AA)


def _draw_labels(out: np.ndarray, boxes, labels: Sequence[Sequence[str]], scale: DrawScale,
                 numbered: bool = True) -> None:
    """Lay out and draw the labels of ``boxes`` on ``out`` in place (leader lines first, labels on top)."""
    placed = layout_labels(out.shape, boxes, labels, scale, numbered)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for label in placed:
        if label is not None:
            _leader(out, boxes[label.box_index], label.rect, scale)
    for label in placed:
        if label is not None:
            _draw_label(out, label, scale)


# ------------------------------------------------------------------ boxes, faces, detections

def _rectangles(out: np.ndarray, boxes, scale: DrawScale) -> None:
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOR, scale.line, cv2.LINE_AA)


def draw_box(image: np.ndarray, box, score: float | None = None, text: str | None = None, *,
             number: int | None = None, scale: DrawScale | None = None) -> np.ndarray:
    """A face box with its label: the number in a badge, then the score (or any ``text``).

    Line width and label size come from the image size (``drawing_scale``), not the box.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    scale = scale or drawing_scale(out.shape)
    _rectangles(out, [box], scale)
    _draw_labels(out, [box], [label_segments(number, score, text)], scale, numbered=number is not None)
    return out


def draw_faces(image: np.ndarray, faces: Sequence, labels: bool = False, ground_truth: Sequence | None = None,
               show_boxes: bool = True, numbers: Sequence[int] | None = None,
               scale: DrawScale | None = None) -> np.ndarray:
    """Boxes, labels and landmarks of every ``Face``; ``ground_truth`` is one (98, 2) array (or
    ``None``) per face, drawn in the ground-truth style with error lines; ``numbers`` (one per
    face) go in badges before the scores. ``labels`` writes each point's index."""
    out = np.array(image, dtype=np.uint8, copy=True)
    scale = scale or drawing_scale(out.shape)
    boxes = [face.box for face in faces]
    if show_boxes:
        _rectangles(out, boxes, scale)
    for i, face in enumerate(faces):
        gt = ground_truth[i] if ground_truth is not None and i < len(ground_truth) else None
        if gt is not None:
            out = draw_ground_truth(out, gt, face.landmarks)
        out = draw_landmarks(out, face.landmarks, labels=labels)
    if show_boxes:
        texts = [label_segments(None if numbers is None else numbers[i], face.score) for i, face in enumerate(faces)]
        _draw_labels(out, boxes, texts, scale, numbered=numbers is not None)
    return out


def draw_detections(image: np.ndarray, detections, numbers: Sequence[int] | None = None,
                    scale: DrawScale | None = None) -> np.ndarray:
    """Detector-only view (no 98-point model): each box with its number and score, and MTCNN's five points."""
    out = np.array(image, dtype=np.uint8, copy=True)
    scale = scale or drawing_scale(out.shape)
    _rectangles(out, detections.boxes, scale)
    out = draw_five_points(out, detections.points, scale=scale)
    texts = [label_segments(None if numbers is None else numbers[i], float(s)) for i, s in enumerate(detections.scores)]
    _draw_labels(out, detections.boxes, texts, scale, numbered=numbers is not None)
    return out


def draw_five_points(image: np.ndarray, points, scale: DrawScale | None = None) -> np.ndarray:
    """MTCNN's five points (F, 5, 2) as white crosses outlined in black: what is shown when no
    98-point model is loaded; cross length ``five_point_size``."""
    out = np.array(image, dtype=np.uint8, copy=True)
    scale = scale or drawing_scale(out.shape)
    for face_points in np.asarray(points, dtype=np.float64).reshape(-1, 5, 2):
        if not np.all(np.isfinite(face_points)):
            continue
        size = five_point_size(face_points, out.shape, scale)
        border = max(1, scale.marker_line // 2)  # the black outline around each white stroke and its ends
        for colour, grow in ((OUTLINE_COLOR, border), (MTCNN_COLOR, 0)):
            for p in face_points:
                cv2.drawMarker(out, _pt(p), colour, cv2.MARKER_CROSS, size + 2 * grow, scale.marker_line + 2 * grow,
                               cv2.LINE_AA)
    return out


# ------------------------------------------------------------------ points drawn on face crops

def draw_on_crops(crops, matrices, landmarks=None, ground_truth=None, five_points=None,
                  labels: bool = False) -> list[np.ndarray]:
    """Each face's own points drawn on its crop, at the crop's scale: the zoomed views (upload
    gallery, WFLW browser), cut from the photo by ``model.pipeline.crop_faces``, not from an
    annotated copy, so no neighbour's box or label covers a face.

    ``crops`` (F, S, S, 3) uint8 and ``matrices`` (F, 2, 3) image -> crop; ``landmarks`` (F, 98, 2),
    ``ground_truth`` (one (98, 2) or ``None`` per face, drawn with error lines to the landmarks) and
    ``five_points`` (F, 5, 2) in image pixels, any of them ``None``; ``labels`` writes point indices.
    """
    views = []
    for i, (view, matrix) in enumerate(zip(crops, matrices)):
        prediction = None if landmarks is None else apply_affine(landmarks[i], matrix)
        truth = None if ground_truth is None or ground_truth[i] is None else apply_affine(ground_truth[i], matrix)
        if truth is not None:
            view = draw_ground_truth(view, truth, prediction)
        if prediction is not None:
            view = draw_landmarks(view, prediction, labels=labels)
        if five_points is not None:
            side = view.shape[0]
            view = draw_five_points(view, apply_affine(five_points[i], matrix)[None],
                                    scale=drawing_scale(view.shape, display_height=side, display_width=side))
        views.append(np.array(view, dtype=np.uint8, copy=True))
    return views
