"""Crop geometry: boxes to square crops, the image -> crop affine map, and point mapping.

Pure numpy (plus ``cv2.warpAffine`` for sampling). Coordinates are pixels, x to the right and y
down; a (2, 3) matrix ``M`` maps a point p as ``M[:, :2] @ p + M[:, 2]``. ``gpu_crops`` is the same
sampling in torch (``affine_grid`` + ``grid_sample``) for images already on a device.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.constants import CROP_PADDING, INPUT_SIZE


def _as_box(box_xyxy) -> np.ndarray:
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {box_xyxy!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {box.tolist()}")
    return box


def box_to_crop(box_xyxy, padding: float = CROP_PADDING) -> tuple[np.ndarray, float]:
    """Square crop around a box.

    Args:
        box_xyxy: (4,) x1, y1, x2, y2 in image pixels.
        padding: the crop side is ``padding`` times the longer box side.

    Returns:
        center (2,) float64 image pixels, side float pixels.
    """
    box = _as_box(box_xyxy)
    center = (box[:2] + box[2:]) / 2.0
    side = float(padding * max(box[2] - box[0], box[3] - box[1]))
    return center, side


def landmark_box(landmarks) -> np.ndarray:
    """Tight (4,) xyxy box around (K, 2) points: the box mmpose's WFLW evaluation crops start from."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"landmarks must have shape (K, 2), got {pts.shape}")
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def crop_matrix(center, side: float, rotation: float = 0.0, output_size: int = INPUT_SIZE) -> np.ndarray:
    """Affine map (2, 3) from image pixels to crop pixels.

    Sends ``center`` to (output_size / 2, output_size / 2), scales by ``output_size / side`` and
    rotates by ``rotation`` degrees, positive = counter-clockwise on screen (the convention of
    ``cv2.getRotationMatrix2D``).
    """
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center must be 2 finite numbers, got {center!r}")
    if not np.isfinite(side) or side <= 0:
        raise ValueError(f"side must be a positive number of pixels, got {side!r}")
    scale = output_size / float(side)
    theta = np.deg2rad(rotation)
    a, b = scale * np.cos(theta), scale * np.sin(theta)
    half = output_size / 2.0
    return np.array(
        [[a, b, half - a * c[0] - b * c[1]],
         [-b, a, half + b * c[0] - a * c[1]]],
        dtype=np.float64,
    )


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a (2, 3) affine map, as a (2, 3) matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3), got {m.shape}")
    lin_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([lin_inv, -lin_inv @ m[:, 2:]], axis=1)


def apply_affine(points, matrix) -> np.ndarray:
    """Map (..., 2) points with a (2, 3) matrix; returns float64 of the same shape."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    if pts.shape[-1] != 2:
        raise ValueError(f"points must have a last dimension of 2, got shape {pts.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def warp_crop(image: np.ndarray, matrix, size: int = INPUT_SIZE) -> np.ndarray:
    """Sample the (size, size) crop that ``matrix`` maps the image onto: bilinear, black border."""
    return cv2.warpAffine(
        image, np.asarray(matrix, dtype=np.float64), (int(size), int(size)),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def square_matrices(centers, sides, size: int = INPUT_SIZE) -> np.ndarray:
    """(F, 2, 3) image -> crop maps of (F, 2) square centres and (F,) sides (image pixels, the whole
    crop) onto ``size`` x ``size`` crops. Raises ``ValueError`` for non-finite centres or sides <= 0."""
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    sides = np.asarray(sides, dtype=np.float64).reshape(-1)
    if len(sides) != len(centers):
        raise ValueError(f"got {len(centers)} crop centres but {len(sides)} sides")
    if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(sides)) and np.all(sides > 0)):
        raise ValueError(f"crop squares need finite centres and positive sides, got sides {sides.tolist()}")
    matrices = np.empty((len(sides), 2, 3))
    for i, (center, side) in enumerate(zip(centers, sides)):
        matrices[i] = crop_matrix(center, side, output_size=size)
    return matrices


def box_matrices(boxes_xyxy, size: int = INPUT_SIZE, padding: float = CROP_PADDING) -> np.ndarray:
    """(F, 2, 3) image -> crop maps of the padded squares around (F, 4) xyxy boxes (``box_to_crop``)."""
    squares = [box_to_crop(box, padding) for box in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)]
    return square_matrices([c for c, _ in squares], [s for _, s in squares], size)


def warp_crops(image: np.ndarray, matrices, size: int = INPUT_SIZE) -> np.ndarray:
    """(F, size, size, 3) uint8 crops of one image, one ``warp_crop`` per (F, 2, 3) matrix."""
    crops = np.empty((len(matrices), size, size, 3), dtype=np.uint8)
    for i, matrix in enumerate(matrices):
        crops[i] = warp_crop(image, matrix, size)
    return crops


def crop_faces(image_rgb: np.ndarray, boxes_xyxy, size: int = INPUT_SIZE,
               padding: float = CROP_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Square crops around boxes: ((F, size, size, 3) uint8, (F, 2, 3) image->crop matrices)."""
    matrices = box_matrices(boxes_xyxy, size, padding)
    return warp_crops(image_rgb, matrices, size), matrices


def _pixel_to_grid(width: float, height: float, like: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) map from pixel coordinates (centres on integers, as cv2 samples) to
    ``grid_sample``'s [-1, 1] with ``align_corners=False``; ``width``/``height`` tensors of shape (...)."""
    zero, one = torch.zeros_like(width), torch.ones_like(width)
    rows = [torch.stack([2.0 / width, zero, 1.0 / width - 1.0], -1),
            torch.stack([zero, 2.0 / height, 1.0 / height - 1.0], -1),
            torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, -2).to(like)


def crop_thetas(matrices, image_sizes, size: int = INPUT_SIZE) -> torch.Tensor:
    """``affine_grid`` thetas for image -> crop matrices.

    Args:
        matrices: (B, 2, 3) image-pixel -> crop-pixel maps (``crop_matrix``), numpy or torch.
        image_sizes: (B, 2) or (2,) width, height in pixels of the image each crop samples from.
        size: crop side in pixels.

    Returns:
        (B, 2, 3) float32 on ``matrices``' device (CPU for numpy): crop grid -> image grid coordinates.
    """
    m = torch.as_tensor(matrices).to(torch.float64)
    if m.ndim != 3 or m.shape[1:] != (2, 3):
        raise ValueError(f"matrices must have shape (B, 2, 3), got {tuple(m.shape)}")
    sizes = torch.as_tensor(image_sizes, dtype=torch.float64, device=m.device).reshape(-1, 2).expand(len(m), 2)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=m.device).expand(len(m), 1, 3)
    crop_to_image = torch.linalg.inv(torch.cat([m, bottom], dim=1))
    side = torch.full((), float(size), dtype=torch.float64, device=m.device)
    from_crop_grid = torch.linalg.inv(_pixel_to_grid(side, side, m))
    thetas = _pixel_to_grid(sizes[:, 0], sizes[:, 1], m) @ crop_to_image @ from_crop_grid
    return thetas[:, :2].to(torch.float32)


def gpu_crops(images: torch.Tensor, matrices, size: int = INPUT_SIZE, image_index=None, *,
              channels_last: bool = True) -> torch.Tensor:
    """Cut crops from images on any device, as ``warp_crop`` does (bilinear, black border).

    Args:
        images: (I, 3, H, W) uint8 or float images on the device (0-255 scale).
        matrices: (B, 2, 3) image-pixel -> crop-pixel maps (``crop_matrix``), numpy or torch.
        size: crop side in pixels.
        image_index: (B,) ints, the image each crop comes from; ``None`` when I == 1 (all from it).
        channels_last: return (B, S, S, 3) (the layout ``model.network.normalize`` takes), else
            (B, 3, S, S).

    Returns:
        float32 crops on ``images``' device, 0-255 scale, not rounded (``warp_crop`` rounds to
        uint8). They match ``warp_crop`` to within cv2's fixed-point sampling (1/32 px positions,
        1/1024 weights): a few grey levels at sharp edges, well under one on average.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (I, 3, H, W), got {tuple(images.shape)}")
    count = len(matrices)
    if image_index is None:
        if len(images) != 1:
            raise ValueError(f"image_index is required with {len(images)} images (it may be omitted for one)")
        image_index = torch.zeros(count, dtype=torch.long)
    index = torch.as_tensor(image_index, dtype=torch.long).cpu()
    if index.shape != (count,) or (count and not 0 <= int(index.min()) <= int(index.max()) < len(images)):
        raise ValueError(f"image_index must be {count} indices into {len(images)} images, got {index.tolist()}")
    height, width = images.shape[2:]
    thetas = crop_thetas(torch.as_tensor(matrices).cpu(), (width, height), size).to(images.device)
    out = torch.empty((count, 3, size, size), dtype=torch.float32, device=images.device)
    for i in index.unique().tolist():
        rows = torch.nonzero(index == i).flatten().to(images.device)
        # expand, not copy: every crop of one image samples the same float image
        source = images[i:i + 1].float().expand(len(rows), -1, -1, -1)
        grid = F.affine_grid(thetas.index_select(0, rows), [len(rows), 3, size, size], align_corners=False)
        out[rows] = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.permute(0, 2, 3, 1) if channels_last else out


def box_iou(box, boxes) -> np.ndarray:
    """Intersection over union of one (4,) xyxy box with (M, 4) boxes -> (M,) in [0, 1]."""
    a = np.asarray(box, dtype=np.float64).reshape(4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:2], b[:, :2])
    hi = np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    union = np.prod(a[2:] - a[:2]) + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# Two boxes of one face overlap at least this much (IoU): MTCNN's box against a landmark extent or an
# annotated rectangle differs in shape and margin, so the bar sits well below the usual 0.5.
MATCH_MIN_IOU = 0.3


def match_boxes(boxes, targets, min_iou: float = MATCH_MIN_IOU) -> list[int | None]:
    """Pair each of (F, 4) ``boxes`` with the index of a (T, 4) ``targets`` box, greedily by IoU
    (highest first), each target used once; ``None`` where no free target overlaps by ``min_iou``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 4)
    overlaps = np.array([box_iou(b, targets) for b in boxes]).reshape(len(boxes), len(targets))
    matched: list[int | None] = [None] * len(boxes)
    for flat in np.argsort(-overlaps, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(targets))
        if overlaps[i, j] < min_iou:
            break
        if matched[i] is None and j not in matched:
            matched[i] = j
    return matched
