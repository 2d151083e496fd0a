"""Training augmentation of the published recipe: flip, box shift, scale, rotation, then one affine crop.

Every random value is a standard normal truncated to [-1, 1] times a factor (mmpose's
``RandomBBoxTransform`` convention). There is no colour augmentation. The flip is folded into the
crop's affine map, so each sample is warped once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.geometry import apply_affine, crop_matrix, warp_crop
from model.layout import FLIP_INDICES


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges (the recipe's values are the defaults)."""

    flip_prob: float = 0.5
    shift_prob: float = 0.3
    shift_factor: float = 0.16   # x crop side, per axis
    scale_factor: float = 0.25   # side x (1 + 0.25 t)
    rotate_prob: float = 0.6
    rotate_factor: float = 60.0  # degrees


@dataclass(frozen=True)
class Transform:
    """One draw of the random parameters."""

    flip: bool
    shift: tuple[float, float]  # fractions of the crop side
    scale: float                # multiplies the crop side
    rotation: float             # degrees, counter-clockwise on screen


def truncated_normal(rng: np.random.Generator, size: int | None = None):
    """Standard normal samples truncated to [-1, 1] (rejection sampling)."""
    n = 1 if size is None else int(size)
    out = np.empty(n)
    filled = 0
    while filled < n:
        draw = rng.standard_normal(2 * (n - filled) + 4)
        draw = draw[np.abs(draw) <= 1.0][: n - filled]
        out[filled:filled + len(draw)] = draw
        filled += len(draw)
    return float(out[0]) if size is None else out


def random_transform(rng: np.random.Generator, params: AugmentParams = AugmentParams()) -> Transform:
    """Draw flip, shift, scale and rotation for one sample."""
    flip = bool(rng.random() < params.flip_prob)
    shift = (0.0, 0.0)
    if rng.random() < params.shift_prob:
        sx, sy = truncated_normal(rng, 2) * params.shift_factor
        shift = (float(sx), float(sy))
    scale = 1.0 + truncated_normal(rng) * params.scale_factor
    rotation = 0.0
    if rng.random() < params.rotate_prob:
        rotation = truncated_normal(rng) * params.rotate_factor
    return Transform(flip, shift, float(scale), float(rotation))


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


def flip_image(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an (H, W, C) image and its (98, 2) points."""
    return np.ascontiguousarray(image[:, ::-1]), flip_landmarks(landmarks, image.shape[1])


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


def augment_crop(image: np.ndarray, landmarks: np.ndarray, center, side: float, output_size: int,
                 rng: np.random.Generator, params: AugmentParams = AugmentParams()):
    """Random crop of one face.

    Args:
        image: (H, W, 3) uint8.
        landmarks: (98, 2) image pixels.
        center, side: the un-augmented square crop (``model.geometry.box_to_crop``).
        output_size: crop side in pixels.

    Returns:
        crop (S, S, 3) uint8, points (98, 2) float32 crop pixels (reordered when mirrored), and
        the (2, 3) image -> crop matrix.
    """
    transform = random_transform(rng, params)
    matrix = transform_matrix(transform, center, side, image.shape[1], output_size)
    points = apply_affine(landmarks, matrix)
    if transform.flip:
        points = points[FLIP_INDICES]
    return warp_crop(image, matrix, output_size), points.astype(np.float32), matrix


def eval_crop(image: np.ndarray, landmarks: np.ndarray, center, side: float, output_size: int):
    """The un-augmented crop: same outputs as ``augment_crop``."""
    matrix = crop_matrix(center, side, 0.0, output_size)
    points = apply_affine(landmarks, matrix).astype(np.float32)
    return warp_crop(image, matrix, output_size), points, matrix


def encode_targets(points: np.ndarray, output_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop pixels -> (targets (98, 2) float32 = points / output_size, weights (98,) float32).

    A point's weight is 1 when it lies inside [0, output_size - 1] on both axes, else 0 (mmpose's
    ``RegressionLabel``); at output_size 256 the targets are the network's output scale.
    """
    pts = np.asarray(points, dtype=np.float32)
    inside = np.all((pts >= 0) & (pts <= output_size - 1), axis=1)
    return pts / np.float32(output_size), inside.astype(np.float32)
