"""Landmark coordinates <-> network outputs: encode (training targets), decode, and the flip test.

The regressor predicts each point's position in the square crop divided by the crop side
(``size``, 256 for the published model: mmpose divides by the input size, not size - 1). This module
is the one home of that scale and of the flip-back formula.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from model.geometry import apply_affine, invert_affine
from model.layout import EYE_CORNERS, FLIP_INDICES, NUM_LANDMARKS

# mmpose 1.x flips a crop-pixel x to (size - 1) - x, i.e. x -> 1 - x - 1/size after normalising
# (its table: NME 4.44); mmpose 0.x used x -> 1 - x (its table: 4.41).
FLIP_CONVENTIONS = ("1.x", "0.x")
DEFAULT_FLIP_CONVENTION = "1.x"


def check_flip_convention(convention: str) -> str:
    if convention not in FLIP_CONVENTIONS:
        raise ValueError(f"flip convention must be one of {', '.join(FLIP_CONVENTIONS)}, got {convention!r}")
    return convention


def encode(points_px: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(98, 2) crop pixels -> (targets (98, 2) float32 = points / size, weights (98,) float32).

    A point's weight is 1 when it lies inside [0, size - 1] on both axes, else 0 (mmpose's
    ``RegressionLabel``).
    """
    pts = np.asarray(points_px, dtype=np.float32)
    inside = np.all((pts >= 0) & (pts <= size - 1), axis=1)
    return pts / np.float32(size), inside.astype(np.float32)


def decode(coords: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """(F, 98, 2) network outputs (crop pixels / ``size``) -> (F, 98, 2) float32 image pixels,
    through the inverse of each crop's (F, 2, 3) image->crop matrix."""
    out = np.empty(np.shape(coords), dtype=np.float32)
    for i, m in enumerate(matrices):
        out[i] = apply_affine(np.asarray(coords[i], np.float64) * float(size), invert_affine(m))
    return out


def flip_back(coords, size: int, convention: str = DEFAULT_FLIP_CONVENTION):
    """(N, 98, 2) outputs on mirrored crops -> the same points on the unmirrored crop.

    The x axis is mirrored (see ``FLIP_CONVENTIONS``) and the points reordered by ``FLIP_INDICES``
    (left and right swap under the mirror). numpy or torch in, the same type out.
    """
    shift = 1.0 / size if check_flip_convention(convention) == "1.x" else 0.0
    out = coords[:, FLIP_INDICES]
    out = out.clone() if isinstance(out, torch.Tensor) else out.copy()
    out[..., 0] = 1.0 - out[..., 0] - shift
    return out


def mirror_crops(crops):
    """(N, S, S, C) crops (numpy or torch, channels last) mirrored left-right."""
    if isinstance(crops, torch.Tensor):
        return torch.flip(crops, dims=[2])
    return np.ascontiguousarray(crops[:, :, ::-1])


def flip_pair(run: Callable, crops, size: int,
              convention: str = DEFAULT_FLIP_CONVENTION) -> tuple[np.ndarray, np.ndarray]:
    """Outputs for (N, S, S, 3) crops and for their mirrors (flipped back), from one forward.

    ``run`` maps a batch of crops (the type given) to (N, 98, 2) outputs (numpy or torch). Returns
    two (N, 98, 2) float32 arrays on the unmirrored crop: their mean is the flip-test prediction and
    their distance a consistency measure.
    """
    n = len(crops)
    if n == 0:
        empty = np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        return empty, empty.copy()
    if isinstance(crops, torch.Tensor):
        batch = torch.cat([crops, mirror_crops(crops)])
    else:
        batch = np.concatenate([crops, mirror_crops(crops)])
    out = to_numpy(run(batch))
    return out[:n], flip_back(out[n:], size, convention)


def flip_error(direct: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Flip consistency: how far apart the two halves of a flip pair put the points.

    Args:
        direct, mirrored: (N, 98, 2) predictions of the same faces (``flip_pair``), in any one
            coordinate frame (crop pixels / size, or image pixels: the ratio is the same under the
            crop's similarity map).

    Returns:
        (N,) float64: the mean point distance between the two, in % of the face's inter-ocular
        distance (``EYE_CORNERS``, measured on their mean); NaN where that distance is 0.
    """
    direct = np.asarray(direct, np.float64)
    mirrored = np.asarray(mirrored, np.float64)
    if direct.shape != mirrored.shape or direct.ndim != 3 or direct.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"flip_error needs two (N, {NUM_LANDMARKS}, 2) arrays, got {direct.shape} and {mirrored.shape}")
    mean = (direct + mirrored) / 2.0
    inter_ocular = np.linalg.norm(mean[:, EYE_CORNERS[0]] - mean[:, EYE_CORNERS[1]], axis=-1)
    spread = np.linalg.norm(direct - mirrored, axis=-1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter_ocular > 0, 100.0 * spread / inter_ocular, np.nan)


def predict_crops(run: Callable, crops, size: int, flip_test: bool = True,
                  convention: str = DEFAULT_FLIP_CONVENTION) -> tuple[np.ndarray, np.ndarray | None]:
    """Network outputs for (N, S, S, 3) crops, flip test included.

    With flip test the mirrored crops go into the same batch as the originals (``flip_pair``); the
    prediction is the mean of the two halves and each crop gets its ``flip_error``.

    Returns:
        ((N, 98, 2) float32 outputs, (N,) float64 flip errors in % of the inter-ocular distance, or
        ``None`` without flip test).
    """
    if len(crops) == 0:
        return np.zeros((0, NUM_LANDMARKS, 2), np.float32), (np.zeros(0) if flip_test else None)
    if not flip_test:
        return to_numpy(run(crops)), None
    direct, mirrored = flip_pair(run, crops, size, convention)
    return (direct + mirrored) / np.float32(2.0), flip_error(direct, mirrored)


def to_numpy(out) -> np.ndarray:
    """Network outputs (numpy, or a torch tensor on any device) as a float32 numpy array."""
    if isinstance(out, torch.Tensor):
        out = out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)
