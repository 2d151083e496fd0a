from model.layout import (
    ATTRIBUTES, EYE_CORNERS, FLIP_INDICES, MIRROR_PAIRS, NUM_LANDMARKS, POINT_REGION, REGION_COLORS, REGIONS,
    _flip_indices,
)

import pytest


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
