import numpy as np

from model.detector import Detections
from model.draw import (BOX_COLOR, ERROR_COLOR, GT_COLOR, MTCNN_COLOR, box_label, draw_box, draw_detections, draw_faces,
                        draw_five_points, draw_ground_truth, draw_landmarks, reading_order)
from model.layout import REGION_COLORS
from model.pipeline import Face


def _points():
    xs, ys = np.meshgrid(np.linspace(40, 160, 14), np.linspace(40, 160, 7))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)  # 98 points on a grid


def test_landmarks_coloured_by_region_and_input_untouched():
    image = np.zeros((200, 200, 3), np.uint8)
    pts = _points()
    out = draw_landmarks(image, pts)
    assert image.max() == 0 and out.shape == image.shape and out.dtype == np.uint8
    x, y = pts[0].round().astype(int)
    assert tuple(out[y, x]) == REGION_COLORS["contour"]
    x, y = pts[97].round().astype(int)
    assert tuple(out[y, x]) == REGION_COLORS["pupils"]


def _has_colour(image, colour, tol=60):
    """Anti-aliased strokes blend into the background: match within a tolerance."""
    return bool((np.abs(image.astype(int) - colour) <= tol).all(axis=2).any())


def test_ground_truth_rings_and_error_lines():
    image = np.zeros((200, 200, 3), np.uint8)
    gt = _points()
    pred = gt + [0, 9.0]  # error lines longer than the rings
    out = draw_ground_truth(image, gt, pred)
    assert _has_colour(out, GT_COLOR) and _has_colour(out, ERROR_COLOR)
    assert not _has_colour(draw_ground_truth(image, gt), ERROR_COLOR)  # no prediction, no error lines


def test_faces_boxes_labels_and_five_points():
    image = np.full((200, 200, 3), 30, np.uint8)
    face = Face(np.array([30, 30, 170, 170], np.float32), 0.99, _points().astype(np.float32))
    plain = draw_faces(image, [face])
    labelled = draw_faces(image, [face], labels=True)
    assert (plain != image).any() and (labelled != plain).any()
    with_gt = draw_faces(image, [face], ground_truth=[_points() + 2])
    assert _has_colour(with_gt, GT_COLOR) and not _has_colour(plain, GT_COLOR, tol=30)
    five = draw_five_points(image, np.array([[[60, 60], [140, 60], [100, 100], [70, 140], [130, 140]]], float))
    assert (five == 255).all(axis=2).sum() > 20


def _near(pixel, colour, tol=40) -> bool:
    """One pixel within ``tol`` of ``colour`` on every channel (anti-aliased strokes blend)."""
    return bool((np.abs(pixel.astype(int) - colour) <= tol).all())


def test_reading_order_by_hand():
    # Two rows: faces at slightly different heights and sizes in the top row, one lower face.
    boxes = [[300, 210, 380, 300],   # 0: second row
             [200, 12, 270, 90],     # 1: top row, middle
             [20, 0, 100, 80],       # 2: top row, left
             [400, 20, 450, 70]]     # 3: top row, right (smaller, lower)
    assert reading_order(boxes) == [2, 1, 3, 0]
    # Overlapping less than half its height: box 1 starts a row of its own below box 0.
    assert reading_order([[0, 0, 10, 10], [50, 6, 60, 16]]) == [0, 1]
    assert reading_order([[50, 0, 60, 10], [0, 4, 10, 14]]) == [1, 0]  # 6 of 10 rows shared: one row
    assert reading_order(np.zeros((0, 4))) == []


def test_box_label_by_hand():
    assert box_label(2, 0.99449) == "#2 0.994"
    assert box_label(None, 1.0) == "1.000"
    assert box_label(7, None) == "#7"
    assert box_label(None, None) is None


def test_detections_drawn_with_boxes_numbers_and_five_points():
    image = np.full((200, 300, 3), 30, np.uint8)
    boxes = np.array([[20, 40, 120, 160], [170, 40, 270, 160]], np.float32)
    points = np.array([[[45, 80], [95, 80], [70, 105], [50, 135], [90, 135]]], np.float32)
    points = np.concatenate([points, points + [150, 0]])
    detections = Detections(boxes, np.array([0.99, 0.95], np.float32), points)
    out = draw_detections(image, detections, numbers=[1, 2])
    assert (image == 30).all() and out.shape == image.shape  # input untouched
    assert _near(out[100, 20], BOX_COLOR) and _near(out[100, 270], BOX_COLOR)  # first box's left, second's right edge
    for x, y in points.reshape(-1, 2).astype(int):
        assert _near(out[y, x], MTCNN_COLOR)  # a cross on every one of the ten points
    numbers_drawn = (draw_detections(image, detections) != out).any(axis=2)
    assert numbers_drawn[:40].any() and not numbers_drawn[40:].any()  # "#1 0.990" vs "0.990", above the boxes
    plain = draw_box(draw_box(image, boxes[0]), boxes[1])
    for x, y in points.reshape(-1, 2).astype(int):
        out[y - 8:y + 9, x - 8:x + 9] = plain[y - 8:y + 9, x - 8:x + 9]
    labelled = (out != plain).any(axis=2)
    assert labelled[:40].any() and not labelled[40:].any()  # the rest is the "#n score" text above the boxes
    assert (draw_detections(image, Detections(boxes[:0], np.zeros(0, np.float32), points[:0])) == image).all()
