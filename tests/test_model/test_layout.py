from model.layout import (
    check_landmark_index,
    ATTRIBUTES, EYE_CORNERS, FLIP_INDICES, MIRROR_PAIRS, NUM_LANDMARKS, NUM_LANDMARKS_68, POINT_REGION, REGION_COLORS,
    REGIONS, REGIONS_68, WFLW_TO_68, _flip_indices, to_68,
)

import numpy as np
import pytest

from tests.helpers import REPO


def test_flip_indices_is_a_self_inverse_permutation():
    assert len(FLIP_INDICES) == NUM_LANDMARKS == 98
    assert sorted(FLIP_INDICES) == list(range(98))
    assert all(FLIP_INDICES[FLIP_INDICES[i]] == i for i in range(98))


@pytest.mark.parametrize("a, b", [(0, 32), (15, 17), (33, 46), (38, 50), (41, 47), (55, 59), (60, 72),
                                  (64, 68), (65, 75), (67, 73), (76, 82), (84, 86), (88, 92), (93, 95), (96, 97)])
def test_spec_mirror_pairs(a, b):
    assert FLIP_INDICES[a] == b and FLIP_INDICES[b] == a


@pytest.mark.parametrize("i", [16, 51, 52, 53, 54, 57, 79, 85, 90, 94])
def test_midline_points_mirror_onto_themselves(i):
    assert FLIP_INDICES[i] == i


def test_regions_cover_all_points_once_in_order():
    spans = list(REGIONS.values())
    assert spans[0][0] == 0 and spans[-1][1] == 98
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))
    assert len(POINT_REGION) == 98 and set(REGION_COLORS) == set(REGIONS)
    assert POINT_REGION[60] == "right_eye" and POINT_REGION[72] == "left_eye" and POINT_REGION[97] == "pupils"


def test_eye_corners_are_mirror_images():
    assert EYE_CORNERS == (60, 72)
    assert FLIP_INDICES[EYE_CORNERS[0]] == EYE_CORNERS[1]


def test_attributes_in_annotation_order():
    assert ATTRIBUTES == ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="more than one mirror pair"):
        _flip_indices(((0, 1), (1, 2)), 3)
    assert len(MIRROR_PAIRS) == 16 + 9 + 2 + 8 + 5 + 3 + 1


# ----------------------------------------------------------------------------- the 68-point subset

@pytest.mark.parametrize("j, wflw", [
    (0, 0), (1, 2), (8, 16), (16, 32),          # jaw: every second contour point, chin in the middle
    (17, 33), (21, 37), (22, 42), (26, 46),     # brows: the upper arcs
    (27, 51), (30, 54), (31, 55), (35, 59),     # nose bridge, lower nose
    (36, 60), (37, 61), (38, 63), (39, 64), (40, 65), (41, 67),  # right eye: corners and two per lid
    (42, 68), (45, 72), (47, 75),               # left eye
    (48, 76), (54, 82), (59, 87), (60, 88), (67, 95),  # outer and inner lip
])
def test_68_point_mapping_by_hand(j, wflw):
    assert WFLW_TO_68[j] == wflw


def test_68_point_subset_is_68_distinct_points_without_pupils():
    assert NUM_LANDMARKS_68 == len(WFLW_TO_68) == len(set(WFLW_TO_68)) == 68
    assert not {96, 97} & set(WFLW_TO_68)
    assert list(REGIONS_68.values())[-1] == (60, 68)
    assert REGIONS_68["jaw"] == (0, 17) and REGIONS_68["right_eye"] == (36, 42) and REGIONS_68["outer_lip"] == (48, 60)


def test_to_68_picks_the_rows_and_keeps_leading_axes():
    points = np.arange(98 * 2, dtype=np.float32).reshape(98, 2)  # point i = (2i, 2i + 1)
    out = to_68(points)
    assert out.shape == (68, 2) and out.dtype == np.float32
    assert out[17].tolist() == [66.0, 67.0] and out[36].tolist() == [120.0, 121.0]  # WFLW 33 and 60
    assert out[48].tolist() == [152.0, 153.0]                                       # WFLW 76
    batch = np.stack([points, points + 1000.0])[None]                               # (1, 2, 98, 2)
    assert to_68(batch).shape == (1, 2, 68, 2)
    assert to_68(batch)[0, 1, 39].tolist() == [1128.0, 1129.0]                     # WFLW 64, second face
    triples = np.concatenate([points, np.full((98, 1), 2.0, np.float32)], axis=1)   # COCO x, y, v
    assert to_68(triples).shape == (68, 3) and to_68(triples)[0].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("shape", [(68, 2), (98,), (2, 97, 2)])
def test_to_68_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"to_68 needs points of shape \(\.\.\., 98, D\), got"):
        to_68(np.zeros(shape))


def test_landmark_index_check_has_one_home():
    assert check_landmark_index(0) == 0 and check_landmark_index(97.0) == 97 and check_landmark_index("5") == 5
    for bad in (98, -1, 2.5, True, None, "x"):
        with pytest.raises(ValueError, match="landmark index must be in 0..97, got"):
            check_landmark_index(bad)
    with pytest.raises(ValueError, match="Landmark must be in 0..97, got 120"):
        check_landmark_index(120, "Landmark")
    retyped = [str(p.relative_to(REPO)) for package in ("app", "model", "training") for p in (REPO / package).rglob("*.py")
               if p.name != "layout.py" and "must be in 0..{NUM_LANDMARKS" in p.read_text(encoding="utf-8")]
    assert not retyped, retyped
