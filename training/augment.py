"""Training augmentation of the published recipes: flip, box shift, scale, rotation, then one affine crop.

Each random amount is a factor times a standard normal kept inside [-limit, limit], in one of the
two ways mmpose's versions draw it (``NormalDraw``): mmpose 0.x clips (``np.clip(randn() * f, ...)``
in ``TopDownGetRandomScaleRotation``: values beyond the ends land exactly on them), mmpose 1.x
redraws (``RandomBBoxTransform``'s truncated normal: nothing lands on the ends). There is no colour
augmentation. The flip is folded into the crop's affine map, so each sample is warped once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.geometry import apply_affine, crop_matrix
from model.layout import FLIP_INDICES

NORMAL_MODES = ("truncated", "clipped")


def truncated_normal(rng: np.random.Generator, size: int, limit: float = 1.0) -> np.ndarray:
    """(size,) float64 standard normal samples restricted to [-limit, limit] by redrawing."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    out = np.empty(int(size))
    filled = 0
    while filled < len(out):
        draw = rng.standard_normal(2 * (len(out) - filled) + 4)
        draw = draw[np.abs(draw) <= limit][: len(out) - filled]
        out[filled:filled + len(draw)] = draw
        filled += len(draw)
    return out


def clipped_normal(rng: np.random.Generator, size: int, limit: float = 1.0) -> np.ndarray:
    """(size,) float64 standard normal samples clamped to [-limit, limit] (mass piles up at the ends)."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return np.clip(rng.standard_normal(int(size)), -limit, limit)


@dataclass(frozen=True)
class NormalDraw:
    """``factor`` x a standard normal kept inside [-limit, limit], ``truncated`` or ``clipped``.

    E.g. mmpose 0.x's rotation clip(N(0, 30), -60, 60) is ``NormalDraw(30, 2, "clipped")``; 1.x's
    60 x truncnorm[-1, 1] is ``NormalDraw(60)``.
    """

    factor: float
    limit: float = 1.0
    mode: str = "truncated"

    def __post_init__(self) -> None:
        if self.mode not in NORMAL_MODES:
            raise ValueError(f"mode must be one of {NORMAL_MODES}, got {self.mode!r}")
        if self.limit <= 0 or self.factor < 0:
            raise ValueError(f"limit must be positive and factor non-negative, got {self.limit} and {self.factor}")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size,) float64 draws."""
        draw = truncated_normal if self.mode == "truncated" else clipped_normal
        return self.factor * draw(rng, size, self.limit)


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and draws of one recipe (defaults: mmpose 0.x's, which made the published file)."""

    flip_prob: float = 0.5
    shift_prob: float = 0.0                               # 0.x has no box shift
    shift: NormalDraw = NormalDraw(0.16)                  # fraction of the crop side, per axis
    scale: NormalDraw = NormalDraw(0.25, 1.0, "clipped")  # side x (1 + draw)
    rotate_prob: float = 0.6
    rotation: NormalDraw = NormalDraw(30.0, 2.0, "clipped")  # degrees, counter-clockwise on screen


# mmpose 0.x (res50_wflw_256x256_softwingloss.py): flip 0.5, no shift, scale x clip(N(1, 0.25),
# 0.75, 1.25) on every sample, rotation clip(N(0, 30), -60, 60) with probability 0.6.
MMPOSE_0X_AUGMENT = AugmentParams()
# mmpose 1.x (td-reg_res50_softwingloss_8xb64-210e_wflw-256x256): flip 0.5, shift by 0.16 x
# truncnorm per axis with probability 0.3, scale 1 + 0.25 x truncnorm, rotation 60 x truncnorm
# with probability 0.6 (truncnorm: standard normal truncated to [-1, 1]).
MMPOSE_1X_AUGMENT = AugmentParams(flip_prob=0.5, shift_prob=0.3, shift=NormalDraw(0.16),
                                  scale=NormalDraw(0.25), rotate_prob=0.6, rotation=NormalDraw(60.0))
# No randomness at all (tests of the crop path).
NO_AUGMENT = AugmentParams(flip_prob=0.0, shift_prob=0.0, scale=NormalDraw(0.0), rotate_prob=0.0)


def crop_reach(params: AugmentParams) -> float:
    """How far from the un-augmented crop centre any augmented crop can sample, in crop sides.

    The largest scale's half-diagonal (any rotation) plus the largest shift's length; the mirror
    is an isometry about the image, so it adds nothing. E.g. 0.x: 1.25 x 0.707 = 0.884.
    """
    scale = 1.0 + params.scale.factor * params.scale.limit
    shift = params.shift.factor * params.shift.limit * math.sqrt(2.0) if params.shift_prob > 0 else 0.0
    return scale * math.sqrt(2.0) / 2.0 + shift


@dataclass(frozen=True)
class Transform:
    """One draw of the random parameters."""

    flip: bool
    shift: tuple[float, float]  # fractions of the crop side
    scale: float                # multiplies the crop side
    rotation: float             # degrees, counter-clockwise on screen


def random_transform(rng: np.random.Generator, params: AugmentParams = MMPOSE_0X_AUGMENT) -> Transform:
    """Draw flip, shift, scale and rotation for one sample (floats and bools, whatever the recipe)."""
    flip = bool(rng.random() < params.flip_prob)
    shift = (0.0, 0.0)
    if rng.random() < params.shift_prob:
        sx, sy = params.shift.sample(rng, 2)
        shift = (float(sx), float(sy))
    scale = 1.0 + float(params.scale.sample(rng, 1)[0])
    rotation = 0.0
    if rng.random() < params.rotate_prob:
        rotation = float(params.rotation.sample(rng, 1)[0])
    return Transform(flip, shift, scale, rotation)


def mirror_matrix(width: int) -> np.ndarray:
    """(2, 3) horizontal mirror of an image ``width`` pixels wide: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of ``outer`` applied after ``inner``."""
    out = outer[:, :2] @ inner  # [A_o A_i | A_o t_i]
    out[:, 2] += outer[:, 2]
    return out


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """(98, 2) points of a mirrored image: x -> width - 1 - x, reordered so index i is point i."""
    pts = np.asarray(landmarks, dtype=np.float64)
    out = apply_affine(pts, mirror_matrix(width))
    return out[FLIP_INDICES]


def transform_matrix(transform: Transform, center, side: float, image_width: int,
                     output_size: int) -> np.ndarray:
    """(2, 3) image -> crop map for one draw: mirror (optional), shift, scale, rotate, crop."""
    center = np.asarray(center, dtype=np.float64)
    inner = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if transform.flip:
        inner = mirror_matrix(image_width)
        center = apply_affine(center, inner)
    center = center + np.asarray(transform.shift) * side
    crop = crop_matrix(center, side * transform.scale, transform.rotation, output_size)
    return compose(crop, inner)


def draw_crop(rng: np.random.Generator | None, params: AugmentParams | None, center, side: float,
              image_width: int, output_size: int) -> tuple[np.ndarray, bool]:
    """One random draw as the (2, 3) image -> crop matrix and whether it mirrors the face.

    ``params=None`` is the un-augmented crop (``rng`` unused). The CPU path (``WFLWDataset``) and
    the GPU path (``training.gpu_data``) both crop with it, so the same generator gives both the
    same crop and the same points.
    """
    if params is None:
        return crop_matrix(center, side, 0.0, output_size), False
    transform = random_transform(rng, params)
    return transform_matrix(transform, center, side, image_width, output_size), transform.flip


def crop_points(landmarks: np.ndarray, matrix: np.ndarray, flip: bool) -> np.ndarray:
    """(98, 2) float32 crop pixels of image ``landmarks``, reordered by ``FLIP_INDICES`` when mirrored."""
    points = apply_affine(landmarks, matrix)
    if flip:
        points = points[FLIP_INDICES]
    return points.astype(np.float32)
