import numpy as np

from model.draw import ERROR_COLOR, GT_COLOR, draw_faces, draw_five_points, draw_ground_truth, draw_landmarks
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
