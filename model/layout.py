"""The WFLW 98-point landmark scheme: the one home of every fact about point indices.

Regions, the normalising eye corners and the left/right mirror pairs are data here; the flip
permutation is derived from the pairs and checked at import time.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 98

# Region name -> (first index, last index + 1), 0-based, in WFLW order.
REGIONS: dict[str, tuple[int, int]] = {
    "contour": (0, 33),
    "right_brow": (33, 42),
    "left_brow": (42, 51),
    "nose_bridge": (51, 55),
    "lower_nose": (55, 60),
    "right_eye": (60, 68),
    "left_eye": (68, 76),
    "outer_lip": (76, 88),
    "inner_lip": (88, 96),
    "pupils": (96, 98),
}

# One RGB colour per region for drawing (a qualitative palette, distinct on light and dark skin).
REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "contour": (255, 215, 0),
    "right_brow": (255, 127, 14),
    "left_brow": (255, 127, 14),
    "nose_bridge": (44, 160, 44),
    "lower_nose": (44, 160, 44),
    "right_eye": (31, 160, 255),
    "left_eye": (31, 160, 255),
    "outer_lip": (214, 39, 40),
    "inner_lip": (247, 120, 190),
    "pupils": (148, 103, 189),
}

# Outer eye corners; their distance normalises NME (inter-ocular NME, as mmpose and the WFLW papers).
EYE_CORNERS: tuple[int, int] = (60, 72)

# Left/right mirror pairs of the WFLW scheme; points not listed are their own mirror image.
MIRROR_PAIRS: tuple[tuple[int, int], ...] = (
    # face contour: 0 <-> 32 ... 15 <-> 17, 16 (chin) on itself
    *((i, 32 - i) for i in range(16)),
    # eyebrows
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),
    # lower nose (51-54 and 57 lie on the midline)
    (55, 59), (56, 58),
    # eyes
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),
    # outer lip (79 and 85 on the midline), inner lip (90 and 94 on the midline)
    (76, 82), (77, 81), (78, 80), (83, 87), (84, 86),
    (88, 92), (89, 91), (93, 95),
    # pupils
    (96, 97),
)


def _flip_indices(pairs: tuple[tuple[int, int], ...], n: int) -> list[int]:
    """Build the mirror permutation from pairs and check it is a self-inverse permutation."""
    perm = list(range(n))
    for a, b in pairs:
        if perm[a] != a or perm[b] != b:
            raise ValueError(f"landmark {a} or {b} appears in more than one mirror pair")
        perm[a], perm[b] = b, a
    if sorted(perm) != list(range(n)) or any(perm[perm[i]] != i for i in range(n)):
        raise ValueError("mirror pairs do not form a self-inverse permutation")
    return perm


# FLIP_INDICES[i] = index of the mirror image of point i.
FLIP_INDICES: list[int] = _flip_indices(MIRROR_PAIRS, NUM_LANDMARKS)

# Region index of every point (same order as REGIONS), for colouring and per-region errors.
POINT_REGION: list[str] = [name for name, (lo, hi) in REGIONS.items() for _ in range(lo, hi)]
if len(POINT_REGION) != NUM_LANDMARKS:
    raise ValueError("REGIONS must cover the 98 points exactly once")

# The six WFLW attribute flags, in annotation-file order.
ATTRIBUTES: tuple[str, ...] = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")

# ----------------------------------------------------------------------------- the 68-point subset

# The 300W / iBUG 68-point scheme (dlib, face-alignment) as the standard subset of the 98 WFLW points:
# region of the 68-point scheme -> the WFLW indices it takes, in 68-point order. The jaw keeps every
# second contour point; each brow its upper arc; each eye its two corners and two points per lid.
_SUBSET_68: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("jaw", tuple(range(0, 33, 2))),
    ("right_brow", tuple(range(33, 38))),
    ("left_brow", tuple(range(42, 47))),
    ("nose_bridge", tuple(range(51, 55))),
    ("lower_nose", tuple(range(55, 60))),
    ("right_eye", (60, 61, 63, 64, 65, 67)),
    ("left_eye", (68, 69, 71, 72, 73, 75)),
    ("outer_lip", tuple(range(76, 88))),
    ("inner_lip", tuple(range(88, 96))),
)

NUM_LANDMARKS_68 = 68

# WFLW_TO_68[j] = the WFLW index of 68-point j (e.g. 17 -> 33, 36 -> 60, 48 -> 76).
WFLW_TO_68: tuple[int, ...] = tuple(i for _, indices in _SUBSET_68 for i in indices)


def _spans(groups: tuple[tuple[str, tuple[int, ...]], ...]) -> dict[str, tuple[int, int]]:
    """Region name -> (first, last + 1) for regions laid end to end in ``groups`` order."""
    spans, start = {}, 0
    for name, indices in groups:
        spans[name] = (start, start + len(indices))
        start += len(indices)
    return spans


# Region name -> (first index, last index + 1) in the 68-point scheme (0-16 jaw ... 60-67 inner lip).
REGIONS_68: dict[str, tuple[int, int]] = _spans(_SUBSET_68)
if len(WFLW_TO_68) != NUM_LANDMARKS_68 or len(set(WFLW_TO_68)) != NUM_LANDMARKS_68:
    raise ValueError("the 68-point subset must name 68 distinct WFLW points")


def to_68(points):
    """The 68-point (300W / iBUG) subset of WFLW points.

    Args:
        points: (..., 98, D) array-like (D = 2 for x, y; 3 for COCO x, y, v triples).

    Returns:
        (..., 68, D) numpy array of the same dtype, rows in 300W order (``WFLW_TO_68``).
    """
    points = np.asarray(points)
    if points.ndim < 2 or points.shape[-2] != NUM_LANDMARKS:
        raise ValueError(f"to_68 needs points of shape (..., {NUM_LANDMARKS}, D), got {points.shape}")
    return points[..., list(WFLW_TO_68), :]


# Point schemes an export may use: the 98 WFLW points, or their 68-point 300W / iBUG subset.
SCHEMES = (NUM_LANDMARKS, NUM_LANDMARKS_68)


def check_scheme(scheme: int) -> int:
    """``scheme`` if it is 98 or 68, else ``ValueError`` naming it."""
    if isinstance(scheme, bool) or scheme not in SCHEMES:
        raise ValueError(f"keypoint scheme must be one of {', '.join(map(str, SCHEMES))}, got {scheme!r}")
    return int(scheme)


def check_landmark_index(value, name: str = "landmark index") -> int:
    """``value`` as a landmark index in 0..97; ``ValueError`` naming ``name`` and the value otherwise.

    The one check of a point index typed or sent by a person: the review store, the editor's
    events and the browser's landmark box.
    """
    try:
        point = int(value)
        whole = point == float(value) and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not 0 <= point < NUM_LANDMARKS:
        raise ValueError(f"{name} must be in 0..{NUM_LANDMARKS - 1}, got {value}")
    return point
