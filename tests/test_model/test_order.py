import numpy as np
import pytest

from model.image import read_image
from model.order import reading_order

GROUP = "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_{}.jpg"


def _boxes(centres, height=50, width=40):
    """Boxes of one size around (cx, cy) centres: (F, 4) xyxy."""
    c = np.asarray(centres, dtype=np.float64)
    return np.concatenate([c - [width / 2, height / 2], c + [width / 2, height / 2]], axis=1)


def test_reading_order_by_hand():
    # Two rows: faces at slightly different heights and sizes in the top row, one lower face.
    boxes = [[300, 210, 380, 300],   # 0: second row
             [200, 12, 270, 90],     # 1: top row, middle
             [20, 0, 100, 80],       # 2: top row, left
             [400, 20, 450, 70]]     # 3: top row, right (smaller, lower)
    assert reading_order(boxes) == [2, 1, 3, 0]
    # Centres 6 apart, more than half the height (5): two rows; 4 apart: one row, left to right.
    assert reading_order([[0, 0, 10, 10], [50, 6, 60, 16]]) == [0, 1]
    assert reading_order([[50, 0, 60, 10], [0, 4, 10, 14]]) == [1, 0]
    assert reading_order(np.zeros((0, 4))) == []
    assert reading_order([[5, 5, 9, 9]]) == [0]


def test_a_staircase_of_faces_is_two_rows_not_a_zig_zag():
    # A back row stepping down (centres 40..70) and a front row (88..110), faces 50 px high. No
    # gap between consecutive centres reaches half a face (the largest, 70 -> 88, is 18 px), so
    # rows grown by overlap chained all eight into one row, numbered left to right across both
    # rows. The eight span 70 px > 1.25 x 50: cut where the parts are tightest, between 70 and 88.
    back = [(0, 40), (100, 50), (200, 60), (300, 70)]
    front = [(50, 88), (150, 95), (250, 105), (350, 110)]
    boxes = _boxes(back + front)
    assert reading_order(boxes) == [0, 1, 2, 3, 4, 5, 6, 7]
    # A lone face a little above its row does not make a row of its own: 40 -> 58 is as large a
    # gap as 66 -> 84, but cutting there leaves a loose lower part (summed squared deviations
    # 0 + 2231 against 395 + 275 for the cut between 66 and 84).
    boxes = _boxes([(300, 40), (0, 58), (100, 62), (200, 66), (50, 84), (150, 92), (250, 100), (350, 106)])
    assert reading_order(boxes) == [1, 2, 3, 0, 4, 5, 6, 7]


def test_the_order_depends_on_the_boxes_not_their_order(rng):
    boxes = _boxes([(0, 40), (100, 50), (200, 60), (300, 70), (50, 88), (150, 95), (250, 105), (350, 110)])
    expected = [tuple(boxes[i]) for i in reading_order(boxes)]
    for _ in range(5):
        shuffled = boxes[rng.permutation(len(boxes))]
        order = reading_order(shuffled)
        assert [tuple(shuffled[i]) for i in order] == expected
        assert reading_order(shuffled[order]) == list(range(len(boxes)))  # already in reading order


def test_bad_boxes_are_refused_by_name():
    with pytest.raises(ValueError, match=r"reading_order: boxes .*shape \(5,\)"):
        reading_order([1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="finite"):
        reading_order([[0, 0, np.nan, 10]])


def _row_by_hand(cy: float, bands: list[float]) -> int:
    """The row a face centre lies in, given the band limits read off the photo by hand."""
    return int(np.searchsorted(bands, cy, side="right"))


@pytest.mark.parametrize("photo, bands, per_row", [
    # Staircase group (the 23-face WIDER photo): back row heads above y=120, middle row 120-190, front below.
    ("24", [120, 190], [8, 7, 8]),
    # The face in the painting (above y=100), the standing row (100-200), the baby held at chest
    # height (200-300), the seated row (below 300, with a small false detection on a shirt).
    ("10", [100, 200, 300], [1, 7, 1, 6]),
])
def test_group_photos_are_numbered_row_by_row(shared_data, detector, photo, bands, per_row):
    """With real MTCNN boxes, face k+1 is right of face k in the same row, or in a lower row."""
    boxes = detector.detect(read_image(shared_data / GROUP.format(photo))).boxes
    rows = [_row_by_hand((b[1] + b[3]) / 2, bands) for b in boxes]
    assert np.bincount(rows).tolist() == per_row
    order = reading_order(boxes)
    assert sorted(order) == list(range(len(boxes)))
    for k, nxt in zip(order, order[1:]):
        same_row_to_the_right = rows[nxt] == rows[k] and boxes[nxt, 0] + boxes[nxt, 2] > boxes[k, 0] + boxes[k, 2]
        assert same_row_to_the_right or rows[nxt] > rows[k], (f"face {order.index(nxt) + 1} (row {rows[nxt]}) "
                                                              f"follows face {order.index(k) + 1} (row {rows[k]})")
