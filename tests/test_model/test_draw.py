import cv2
import numpy as np
import pytest

from model.detector import Detections
from model.draw import (BOX_COLOR, ERROR_COLOR, GT_COLOR, LABEL_BACK_COLOR, LEGEND, MTCNN_COLOR, OUTLINE_COLOR,
                        PRED_POINT_COLORS, css_hex, draw_box, draw_detections, draw_faces, draw_five_points,
                        draw_ground_truth, draw_landmarks, drawing_scale, label_segments, layout_labels, legend_html,
                        draw_on_crops)
from model.image import read_image
from model.order import reading_order
from model.layout import REGION_COLORS
from model.pipeline import Face, crop_faces


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


GREY = 128


def _label_pixels(image, box, **label) -> np.ndarray:
    """(H, W) bool: the pixels the label of ``box`` changes (drawn with and without it)."""
    return (draw_box(image, box, **label) != draw_box(image, box)).any(axis=2)


def _runs(values) -> list[tuple[object, int]]:
    """Run-length encoding: [(value, length), ...]."""
    runs: list[tuple[object, int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


def test_number_and_score_are_drawn_apart():
    assert label_segments(1, 1.0) == ("#1", "1.000")
    assert label_segments(11, 0.5, text="left") == ("#11", "left")
    assert label_segments(None, 0.99449) == ("0.994",) and label_segments(None, None) == ()
    image = np.full((480, 640, 3), GREY, np.uint8)
    box = [200, 200, 350, 350]
    out = draw_box(image, box, 1.0, number=1)
    ys, xs = np.nonzero(_label_pixels(image, box, score=1.0, number=1))
    assert ys.max() < 200  # above the box
    # The label's top row, left to right: the number's filled badge, the untouched photo, the
    # score's dark backing: "#1" and "1.000" never touch ("#11.000").
    top = out[ys.min(), xs.min():xs.max() + 1]
    kinds = ["badge" if tuple(p) == BOX_COLOR else "back" if tuple(p) == LABEL_BACK_COLOR else
             "photo" if (p == GREY).all() else "other" for p in top]
    runs = _runs(kinds)
    assert [k for k, _ in runs] == ["badge", "photo", "back"], runs
    assert runs[1][1] >= 2


def _ink_height(image_shape) -> int:
    """Height in image pixels of the score's digits drawn on a grey image of ``image_shape``."""
    image = np.full(image_shape + (3,), GREY, np.uint8)
    height, width = image_shape
    box = [width // 3, height // 3, width // 2, height // 2]
    out = draw_box(image, box, 0.5)
    label = _label_pixels(image, box, score=0.5)
    ys, xs = np.nonzero(label)
    rect = out[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    ink = (rect != LABEL_BACK_COLOR).any(axis=2)
    rows = np.nonzero(ink.any(axis=1))[0]
    return int(rows.max() - rows.min() + 1)


def test_label_size_follows_the_displayed_image():
    # The upload view shows images in about 640 x 440 px, never enlarged: a 1920 x 1080 photo at a
    # third of its size, so its labels are drawn three times as tall as on a 640 x 480 frame.
    assert drawing_scale((200, 300)).text_px == 11             # shown 1:1
    assert drawing_scale((480, 640)).text_px == 12             # 480 / 440 = 1.09 image px per screen px
    assert drawing_scale((1080, 1920)).text_px == 33           # 1920 / 640 = 3
    assert drawing_scale((2160, 3840, 3)).text_px == 66
    small, large = _ink_height((480, 640)), _ink_height((1080, 1920))
    assert small >= 11 and large >= 3 * 11   # at least 11 px tall on screen
    assert 2.5 < large / small < 3.2
    with pytest.raises(ValueError, match="drawing_scale: image 0x640"):
        drawing_scale((0, 640))


def test_box_line_and_label_keep_their_size_as_the_box_changes():
    # The old line width round(side / 150) flipped between 1 and 2 px at sides 220 and 230.
    image = np.full((480, 640, 3), GREY, np.uint8)
    widths, label_heights = set(), set()
    for side in (149, 151, 220, 230):
        box = [320 - side / 2, 260 - side / 2, 320 + side / 2, 260 + side / 2]
        out = draw_box(image, box, 0.99, number=3)
        left_edge = (out[260, :320] != GREY).any(axis=1)
        widths.add(int(left_edge.sum()))
        label_rows = _label_pixels(image, box, score=0.99, number=3).any(axis=1)
        label_heights.add(int(label_rows.sum()))
        assert label_heights == {int((out == LABEL_BACK_COLOR).all(axis=2).any(axis=1).sum())}
        # The same through draw_faces (the webcam overlay): points kept to the box's middle.
        face = Face(np.array(box, np.float32), 0.99, (_points() / 8 + 300).astype(np.float32))
        drawn = draw_faces(image, [face], numbers=[3])
        widths.add(int((drawn[260, :320 - 30] != GREY).any(axis=1).sum()))
        label_heights.add(int((drawn == LABEL_BACK_COLOR).all(axis=2).any(axis=1).sum()))  # the score's backing
    assert len(widths) == 1 and len(label_heights) == 1, (widths, label_heights)


def _assert_inside_and_apart(placed, image_shape):
    height, width = image_shape[:2]
    rects = [p.rect for p in placed]
    for x1, y1, x2, y2 in rects:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (x1, y1, x2, y2)
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0, (a, b)


def test_labels_inside_the_image_and_apart_on_a_dense_row():
    # 23 faces 40 px wide, 4 px apart, touching the top edge, the first and last touching the sides.
    shape = (600, 1024)
    boxes = np.array([[4 + 44 * i, 0, 44 + 44 * i, 46] for i in range(23)], float)
    boxes[0, 0], boxes[-1, 2] = 0, 1023
    placed = layout_labels(shape, boxes, [label_segments(i + 1, 0.99) for i in range(23)])
    assert all(p is not None for p in placed)
    _assert_inside_and_apart(placed, shape)
    assert [p.segments[0] for p in placed] == [f"#{i + 1}" for i in range(23)]  # every number kept
    # Three faces with room around them keep number and score, right above their boxes.
    boxes = np.array([[100, 200, 200, 300], [400, 200, 500, 300], [700, 200, 800, 300]], float)
    placed = layout_labels(shape, boxes, [label_segments(i + 1, 0.99) for i in range(3)])
    assert [p.segments for p in placed] == [("#1", "0.990"), ("#2", "0.990"), ("#3", "0.990")]
    assert [p.rect[3] for p in placed] == [200, 200, 200] and [p.rect[0] for p in placed] == [100, 400, 700]
    # A box running off the top of the image (breakingbad.jpg's second face): its label stays inside.
    placed = layout_labels((1080, 1920), [[1248, -5, 1617, 538]], [label_segments(2, 1.0)])
    _assert_inside_and_apart(placed, (1080, 1920))


def test_labels_inside_and_apart_on_a_real_group_photo(shared_data, detector, artifacts_dir):
    image = read_image(shared_data / "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_24.jpg")
    found = detector.detect(image)
    order = reading_order(found.boxes)
    detections = Detections(found.boxes[order], found.scores[order], found.points[order])
    assert len(detections) == 23
    placed = layout_labels(image.shape, detections.boxes, [label_segments(i + 1, float(s))
                                                           for i, s in enumerate(detections.scores)])
    _assert_inside_and_apart(placed, image.shape)
    assert [p.segments[0] for p in placed] == [f"#{i + 1}" for i in range(23)]
    out = draw_detections(image, detections, numbers=list(range(1, 24)))
    cv2.imwrite(str(artifacts_dir / "draw-group-23-faces.png"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    for p in placed:  # each label drawn where it was laid out: its number badge's corner pixel
        assert tuple(out[p.rect[1], p.rect[0]]) == BOX_COLOR


def test_five_points_are_large_and_outlined_on_a_full_hd_frame():
    image = np.full((1080, 1920, 3), GREY, np.uint8)
    points = np.array([[[900, 500], [1020, 500], [960, 560], [915, 620], [1005, 620]]], float)
    out = draw_five_points(image, points)
    window = out[470:531, 870:931]  # around the first point (60 px from its neighbours)
    ys, xs = np.nonzero((window != GREY).any(axis=2))
    assert xs.max() - xs.min() + 1 >= 24 and ys.max() - ys.min() + 1 >= 24  # 8 px on screen at 1:3
    assert (window >= 240).all(axis=2).sum() >= 40  # the white cross ...
    assert (window <= 15).all(axis=2).sum() >= 40   # ... and its black outline
    assert OUTLINE_COLOR == (0, 0, 0) and MTCNN_COLOR == (255, 255, 255)


def test_one_legend_for_every_view():
    assert css_hex(GT_COLOR) == "#00ff00" and css_hex((0, 200, 255)) == "#00c8ff"
    with pytest.raises(ValueError, match="css_hex: expected three integers"):
        css_hex((256, 0, 0))
    by_mark = {}
    for entry in LEGEND:
        assert entry.css == css_hex(entry.rgb)
        by_mark.setdefault(entry.mark, []).append(entry.rgb)
    assert by_mark["ring"] == [GT_COLOR] and by_mark["line"] == [ERROR_COLOR]
    assert by_mark["box"] == [BOX_COLOR] and by_mark["cross"] == [MTCNN_COLOR]
    assert set(by_mark["dot"]) == set(REGION_COLORS.values()) == set(PRED_POINT_COLORS)
    assert GT_COLOR not in by_mark["dot"] and ERROR_COLOR not in by_mark["dot"]  # truth and error stand apart
    assert len({e.name for e in LEGEND}) == len(LEGEND)
    page = legend_html()
    assert all(e.css in page for e in LEGEND) and "Ground truth" in page and "Prediction: eye" in page


def test_draw_on_crops_draws_only_each_faces_own_points_in_crop_pixels():
    """Box (100, 100, 200, 200): crop centre (150, 150), side 125 (padding 1.25), so a 256 crop
    scales by 2.048: image (175, 150) -> crop (179.2, 128) and (205, 150) -> (240.6, 128)."""
    image = np.full((300, 400, 3), 90, np.uint8)
    image[:, 200:] = 160
    boxes = np.array([[100, 100, 200, 200], [250, 100, 350, 200]], np.float64)
    marks = np.full((2, 98, 2), np.nan)
    marks[0, 54] = (175, 150)   # face 1's nose point
    marks[1, 60] = (205, 150)   # face 2's eye corner, inside face 1's crop
    crops, matrices = crop_faces(image, boxes, size=256)
    plain = crops.copy()

    views = draw_on_crops(crops, matrices, landmarks=marks)

    np.testing.assert_array_equal(crops, plain)  # input untouched
    assert len(views) == 2 and tuple(views[0][128, 179]) == PRED_POINT_COLORS[54]
    assert tuple(views[0][128, 241]) == tuple(plain[0][128, 241])  # the neighbour's point is not drawn in it
    changed = np.argwhere(np.any(views[0] != plain[0], axis=-1))
    assert len(changed) and np.abs(changed - (128, 179)).max() <= 3  # nothing else: no box, no label
    np.testing.assert_array_equal(draw_on_crops(crops, matrices), plain)


def test_draw_on_crops_draws_ground_truth_and_five_points_in_crop_pixels():
    image = np.full((300, 300, 3), 90, np.uint8)
    crops, matrices = crop_faces(image, np.array([[100, 100, 200, 200]], np.float64), size=256)
    truth = np.full((98, 2), np.nan)
    truth[54] = (175, 150)
    five = np.full((1, 5, 2), 150.0)
    five[0, :, 0] = (125, 175, 150, 130, 170)  # eyes, nose, mouth corners on one row: crosses at crop y 128

    with_truth = draw_on_crops(crops, matrices, ground_truth=[truth])[0]
    ring = np.argwhere(np.any(with_truth != 90, axis=-1))
    green = with_truth[tuple(ring.T)].astype(int)
    assert len(ring) and np.abs(ring.mean(axis=0) - (128, 179.2)).max() < 1.5  # a ring centred on the point
    assert np.all(green[:, 1] > green[:, 0]) and np.all(green[:, 1] > green[:, 2])  # in GT_COLOR (green)
    with_five = draw_on_crops(crops, matrices, five_points=five)[0]
    assert tuple(with_five[128, 128]) == MTCNN_COLOR and tuple(with_five[128, 77]) == MTCNN_COLOR  # x 150, 125
