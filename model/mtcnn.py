"""MTCNN's three stages (P-, R- and O-net) as a few batched tensor operations per stage.

The algorithm and the numbers are facenet-pytorch's ``detect_face`` (its networks and the weights
in its wheel): an image pyramid searched by the fully convolutional P-net, candidate boxes
regressed, squared and clipped, re-scored on 24 x 24 crops by R-net and on 48 x 48 crops by O-net,
with the same thresholds and non-maximum suppressions. What differs is how the work is laid out:

- every area resample (each pyramid level and every R-/O-net crop) is read off one integral image
  of the photo, a whole level or batch of crops at once. Each output pixel is the mean of its
  source bin, the bins of ``F.interpolate(mode="area")`` (adaptive average pooling), and the mean
  is formed as that operator does (a float32 sum divided by the bin height, then by its width), so
  the resampled pixels are bit for bit facenet's;
- P-net searches each level in bands, and the R-/O-net crops are cut and scored in batches sized
  to stay in cache, never box by box. The nets see channels-last batches, so their float rounding
  differs from facenet's by about 1e-6;
- suppression within a large level compares each window with its grid neighbours only (the same
  windows survive as with torchvision's ``nms``); facenet's suppression across levels, which never
  removes a window, is a sort; the final "Min" suppression is resolved in rounds over a pairwise
  overlap matrix, ties broken as facenet's NumPy code breaks them.

Everything stays on the images' device: no host round trip per box (the final suppression reads
its scores' order on the host once per batch), no Python loop over boxes. docs/detector.md has the
figures.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms

from model.backends import AUTO, ONNX, ONNX_OPSET, TORCH, cpu_session, default_cache_dir, weights_digest
from model.io import atomic_write

# P-net's window and stride: MTCNN cannot search for faces smaller than the window, in pixels of
# a pyramid level, and its score map has one cell per stride pixels.
PNET_WINDOW = 12
PNET_STRIDE = 2
# Each pyramid level is this much smaller than the one before (MTCNN's published factor).
PYRAMID_FACTOR = 0.709
# R-net and O-net input sides, pixels.
RNET_SIZE, ONET_SIZE = 24, 48
# All three nets see pixels as (value - 127.5) / 128.
PIXEL_CENTER, PIXEL_SCALE = 127.5, 0.0078125
# Suppression overlaps: IoU within a pyramid level, IoU after P-net and after R-net, and the
# overlap over the smaller box ("Min") after O-net.
LEVEL_NMS_IOU, STAGE_NMS_IOU, FINAL_NMS_MIN = 0.5, 0.7, 0.7
# The backend "auto" picks on CPU: the faster one on the whole detector (``python -m bench.detection``;
# on the 2-core machine, quiet, torch took 0.48-0.55x ONNX Runtime's time; see docs/detector.md).
DEFAULT_CPU_BACKEND = TORCH
# Windows of one pyramid level can overlap by IoU > 0.5 only within this many score-map cells of
# each other (sides 11 / scale +- 1 px, neighbouring cells 2 / scale px apart, scale <= 1).
WINDOW_REACH = 2
# Levels with more windows than this are suppressed by ``window_nms`` (torchvision's nms, quadratic
# in the windows, is quicker below).
WINDOW_NMS_MIN = 1000
# P-net searches a pyramid level in horizontal bands of about this many pixels (summed over the
# batch's images): about 100 bytes of activations a pixel, ~25 MB a band however large the photo
# (measured: bands of 2^18 pixels were faster than whole levels, and than 2^16 or 2^20).
BAND_PIXELS = 1 << 18
# Crops are cut and go through R-net and O-net in batches of about this many pixels (128 R-net
# crops, 32 O-net crops): small enough for a batch's activations to stay in cache, large enough to
# keep the per-call overhead small (measured fastest on the 2-core machine, 1 or 2 threads).
STAGE_PIXELS = 128 * RNET_SIZE ** 2

Net = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass
class Candidates:
    """Boxes of one stage across a batch of images.

    boxes: (K, 4) float32 x1, y1, x2, y2; scores: (K,) float32; image: (K,) int64 index in the batch.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    image: torch.Tensor

    def take(self, index: torch.Tensor) -> Candidates:
        return Candidates(self.boxes[index], self.scores[index], self.image[index])

    @staticmethod
    def cat(parts: list[Candidates]) -> Candidates:
        return Candidates(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                          torch.cat([p.image for p in parts]))


def no_candidates(device: torch.device) -> Candidates:
    """An empty ``Candidates`` on ``device``."""
    return Candidates(torch.zeros((0, 4), device=device), torch.zeros((0,), device=device),
                      torch.zeros((0,), dtype=torch.int64, device=device))


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float = PYRAMID_FACTOR) -> list[float]:
    """Scale of each pyramid level: the first maps ``min_face_size`` onto P-net's window, each next
    one is ``factor`` smaller, down to a short side of one window (floats computed as facenet does)."""
    first = PNET_WINDOW / min_face_size
    short = min(height, width) * first
    scales, scale = [], first
    while short >= PNET_WINDOW:
        scales.append(scale)
        scale, short = scale * factor, short * factor
    return scales


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """(B, H + 1, W + 1, 3) int32 running sums of (B, H, W, 3) uint8 images, zero first row and column.

    Past 2^31 (images over 8.4 megapixels) the sums wrap around modulo 2^32 (OpenCV's and torch's
    int32 additions wrap); every rectangle sum taken from them covers one resampling bin, far below
    2^31, so the wrapped differences are exact. On CPU OpenCV computes it (several times faster than
    two cumulative sums).
    """
    if images.device.type == "cpu":
        sums = [torch.from_numpy(cv2.integral(image.numpy(), sdepth=cv2.CV_32S)) for image in images]
        return torch.stack(sums) if len(sums) > 1 else sums[0][None]
    return integral_image_torch(images)


def integral_image_torch(images: torch.Tensor) -> torch.Tensor:
    """``integral_image`` by two cumulative sums, on any device."""
    sums = torch.zeros((images.shape[0], images.shape[1] + 1, images.shape[2] + 1, images.shape[3]),
                       dtype=torch.int32, device=images.device)
    sums[:, 1:, 1:] = images.to(torch.int32).cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
    return sums


def area_bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source bins of an area resample of ``length`` pixels from ``start`` to ``size`` pixels.

    start, length: (N,) int64. Returns first and end (exclusive) source pixel of each output pixel,
    each (N, size): ``start + floor(i * length / size)`` and ``start + ceil((i + 1) * length / size)``,
    the bins of adaptive average pooling (which ``F.interpolate(mode="area")`` is).
    """
    i = torch.arange(size, device=start.device)
    length = length[:, None]
    return start[:, None] + i * length // size, start[:, None] + ((i + 1) * length + size - 1) // size


def area_resample(integral: torch.Tensor, image: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                  cols: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Means over rectangular bins, read off ``integral_image``: (N, 3, h, w) float32.

    Args:
        integral: (B, H + 1, W + 1, 3) int32 from ``integral_image``.
        image: (N,) int64 index of each output's image in the batch.
        rows: first and end row of each output row's bin, each (N, h) int64.
        cols: first and end column of each output column's bin, each (N, w) int64.
    """
    _, height, width, channels = integral.shape
    flat = integral.reshape(-1, channels)
    (r0, r1), (c0, c1) = rows, cols
    first_row, end_row = ((image[:, None] * height + r) * width for r in (r0, r1))  # flat offsets, (N, h)

    def corner(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return flat.index_select(0, (row[:, :, None] + col[:, None, :]).view(-1))

    total = corner(end_row, c1)
    total -= corner(first_row, c1)
    total -= corner(end_row, c0)
    total += corner(first_row, c0)
    # As adaptive average pooling divides: a float32 sum, by the bin height, then by its width.
    mean = total.view(len(image), r0.shape[1], c0.shape[1], channels).float()
    mean /= (r1 - r0).float()[:, :, None, None]
    mean /= (c1 - c0).float()[:, None, :, None]
    return mean.permute(0, 3, 1, 2)


def level_bins(integral: torch.Tensor, scale: float) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Row and column bins of a pyramid level of every image, each (B, h) or (B, w) int64: the level
    sized as facenet-pytorch sizes it, ``int(side * scale + 1)``."""
    batch, height, width = integral.shape[0], integral.shape[1] - 1, integral.shape[2] - 1
    ones = torch.ones(batch, dtype=torch.int64, device=integral.device)
    return (area_bins(ones * 0, ones * height, int(height * scale + 1)),
            area_bins(ones * 0, ones * width, int(width * scale + 1)))


def pnet_level(integral: torch.Tensor, pnet: Net, scale: float,
               band_pixels: int = BAND_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """P-net on one pyramid level of every image: (offsets (B, 4, h', w'), probabilities (B, 2, h', w')).

    A level larger than ``band_pixels`` is resampled and searched in horizontal bands, so neither
    the level nor P-net's activations exist whole. Bands start on even rows and overlap by
    ``PNET_WINDOW - PNET_STRIDE`` rows; all but the last have an even height. Each output row then
    comes from one band, from the same pixels and pooling windows as on the whole level.
    """
    (r0, r1), cols = level_bins(integral, scale)
    images = torch.arange(integral.shape[0], device=integral.device)
    height = r0.shape[1]
    band = max(2 * PNET_WINDOW, band_pixels // (cols[0].shape[1] * len(images)) // 2 * 2)
    overlap = PNET_WINDOW - PNET_STRIDE
    parts, top = [], 0
    while True:
        last = top + band >= height
        rows = (r0[:, top:top + band], r1[:, top:top + band])
        offsets, probs = pnet(normalize_(area_resample(integral, images, rows, cols)))
        keep = offsets.shape[2] if last else (band - overlap) // PNET_STRIDE
        parts.append((offsets[:, :, :keep], probs[:, :, :keep]))
        if last:
            break
        top += band - overlap
    return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)


def normalize_(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 255] as MTCNN's nets see them, (value - 127.5) / 128, in place (returned)."""
    return pixels.sub_(PIXEL_CENTER).mul_(PIXEL_SCALE)


def level_candidates(offsets: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float) -> tuple[
        Candidates, torch.Tensor, torch.Tensor]:
    """P-net's windows at or above ``threshold`` on one pyramid level, in image pixels.

    Args:
        offsets: (B, 4, h, w) box regression; probs: (B, h, w) face probability.
        scale: the level's scale.

    Returns:
        the windows (boxes on the integer grid MTCNN uses), their (K, 4) regression offsets, and
        their (K, 2) int64 cells (x, y) in the score map, in row-major order.
    """
    image, y, x = (probs >= threshold).nonzero(as_tuple=True)
    cells = torch.stack([x, y], 1)
    top_left = ((PNET_STRIDE * cells.to(offsets.dtype) + 1) / scale).floor()
    bottom_right = ((PNET_STRIDE * cells.to(offsets.dtype) + PNET_WINDOW) / scale).floor()
    boxes = torch.cat([top_left, bottom_right], 1)
    return Candidates(boxes, probs[image, y, x], image), offsets.permute(0, 2, 3, 1)[image, y, x], cells


def regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Boxes moved by regression offsets, in units of their width and height.

    ``inclusive``: sides counted as x2 - x1 + 1 (after R-net and O-net) rather than x2 - x1
    (after P-net), as MTCNN does.
    """
    extra = 1 if inclusive else 0
    size = (boxes[:, 2:] - boxes[:, :2] + extra).repeat(1, 2)
    return boxes + offsets * size


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes grown to squares on their longer side, about the same centre."""
    size = boxes[:, 2:] - boxes[:, :2]
    side = size.max(1, keepdim=True).values
    top_left = boxes[:, :2] + size * 0.5 - side * 0.5
    return torch.cat([top_left, top_left + side], 1)


def crop_bounds(boxes: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel rectangle each box crops: (N, 4) int64 x0, y0, x1, y1 (end exclusive), and (N,) bool
    whether it holds any pixel. Coordinates are truncated towards zero and clipped to the image,
    as MTCNN does (it does not pad crops that run off the image)."""
    b = boxes.trunc().int().long()
    x0, y0 = b[:, 0].clamp(min=1) - 1, b[:, 1].clamp(min=1) - 1
    x1, y1 = b[:, 2].clamp(max=width), b[:, 3].clamp(max=height)
    return torch.stack([x0, y0, x1, y1], 1), (x1 > x0) & (y1 > y0)


def crop_bins(found: Candidates, width: int, height: int, size: int) -> tuple[tuple[torch.Tensor, ...], ...]:
    """Area-resample bins of the (size, size) crops MTCNN cuts from the candidates' boxes (see
    ``crop_bounds``): rows (first, end) and columns (first, end), each (N', size) int64, for the
    N' boxes that hold a pixel, and the (N,) bool mask of those boxes (the others are dropped)."""
    bounds, valid = crop_bounds(found.boxes, width, height)
    bounds = bounds[valid]
    rows = area_bins(bounds[:, 1], bounds[:, 3] - bounds[:, 1], size)
    cols = area_bins(bounds[:, 0], bounds[:, 2] - bounds[:, 0], size)
    return rows, cols, valid


def score_crops(integral: torch.Tensor, net: Net, found: Candidates, size: int) -> tuple[
        tuple[torch.Tensor, ...] | None, torch.Tensor]:
    """``net`` on the (size, size) crops of the candidates' boxes, cut and scored ``STAGE_PIXELS``
    at a time (a batch's crops and activations stay in cache). Returns the net's outputs for the
    boxes that hold a pixel (``None`` when none does) and the (N,) bool mask of those boxes."""
    (r0, r1), (c0, c1), valid = crop_bins(found, integral.shape[2] - 1, integral.shape[1] - 1, size)
    image = found.image[valid]
    batch = max(1, STAGE_PIXELS // size ** 2)
    outputs = []
    for start in range(0, len(image), batch):
        part = slice(start, start + batch)
        crops = area_resample(integral, image[part], (r0[part], r1[part]), (c0[part], c1[part]))
        outputs.append(net(normalize_(crops)))
    return (tuple(torch.cat(parts) for parts in zip(*outputs)) if outputs else None), valid


def propose(integral: torch.Tensor, pnet: Net, min_face_size: float, threshold: float) -> Candidates:
    """Stage 1: P-net on every pyramid level, suppression within each level (IoU 0.5), boxes
    regressed and squared; best first."""
    height, width = integral.shape[1] - 1, integral.shape[2] - 1
    scales = pyramid_scales(height, width, min_face_size)
    found, offsets = [no_candidates(integral.device)], [torch.zeros((0, 4), device=integral.device)]
    for scale in scales:
        reg, probs = pnet_level(integral, pnet, scale)
        level, moves, cells = level_candidates(reg, probs[:, 1], scale, threshold)
        if len(level.boxes) > WINDOW_NMS_MIN and scale <= 1.0:
            keep = window_nms(level, cells, probs[:, 1].shape, LEVEL_NMS_IOU)
        else:
            keep = batched_nms(level.boxes, level.scores, level.image, LEVEL_NMS_IOU)
        found.append(level.take(keep))
        offsets.append(moves[keep])
    found, offsets = Candidates.cat(found), torch.cat(offsets)
    if scales and scales[0] <= 1.0:
        # facenet-pytorch also suppresses across levels at IoU 0.7, which never removes a window
        # when no level is enlarged: one level's windows overlap by IoU 0.5 at most (just
        # suppressed), and windows of different levels differ in side by the factor 0.709 (+-1 px),
        # so their IoU, at most the ratio of their areas, stays below 0.69. Best first, as it leaves them.
        keep = found.scores.argsort(descending=True, stable=True)
    else:
        keep = batched_nms(found.boxes, found.scores, found.image, STAGE_NMS_IOU)
    found = found.take(keep)
    return Candidates(square(regress(found.boxes, offsets[keep], inclusive=False)), found.scores, found.image)


def refine(integral: torch.Tensor, rnet: Net, found: Candidates, threshold: float) -> Candidates:
    """Stage 2: R-net on 24 x 24 crops; boxes above ``threshold`` kept, suppressed (IoU 0.7),
    regressed and squared."""
    scored, valid = score_crops(integral, rnet, found, RNET_SIZE)
    if scored is None:
        return no_candidates(integral.device)
    offsets, probs = scored
    scores = probs[:, 1]
    passed = scores > threshold
    found = Candidates(found.boxes[valid][passed], scores[passed], found.image[valid][passed])
    offsets = offsets[passed]
    keep = batched_nms(found.boxes, found.scores, found.image, STAGE_NMS_IOU)
    found = found.take(keep)
    return Candidates(square(regress(found.boxes, offsets[keep], inclusive=True)), found.scores, found.image)


def output(integral: torch.Tensor, onet: Net, found: Candidates, threshold: float) -> tuple[Candidates, torch.Tensor]:
    """Stage 3: O-net on 48 x 48 crops; faces above ``threshold`` with their five points
    (F, 5, 2) in image pixels, boxes regressed, then suppressed by overlap over the smaller box (0.7)."""
    scored, valid = score_crops(integral, onet, found, ONET_SIZE)
    if scored is None:
        return no_candidates(integral.device), torch.zeros((0, 5, 2), device=integral.device)
    offsets, marks, probs = scored
    scores = probs[:, 1]
    passed = scores > threshold
    found = Candidates(found.boxes[valid][passed], scores[passed], found.image[valid][passed])
    offsets, marks = offsets[passed], marks[passed]
    size = found.boxes[:, 2:] - found.boxes[:, :2] + 1
    # MTCNN's points are fractions of the box, measured from the pixel before its corner.
    points = torch.stack([size[:, None, 0] * marks[:, :5] + found.boxes[:, None, 0] - 1,
                          size[:, None, 1] * marks[:, 5:] + found.boxes[:, None, 1] - 1], 2)
    found = Candidates(regress(found.boxes, offsets, inclusive=True), found.scores, found.image)
    keep = nms_min(found.boxes, found.scores, found.image, FINAL_NMS_MIN)
    return found.take(keep), points[keep]


def min_overlap(boxes: torch.Tensor) -> torch.Tensor:
    """(N, N) intersection over the smaller box's area, sides counted inclusively (x2 - x1 + 1)."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    sides = (high - low + 1).clamp(min=0.0)
    return sides[..., 0] * sides[..., 1] / torch.minimum(area[:, None], area[None, :])


def greedy_keep(order: torch.Tensor, better: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
    """Greedy suppression from its pairs: box ``worse[k]`` goes when box ``better[k]`` (ranked
    before it in ``order``) is kept. Returns the kept boxes' indices in ``order``.

    Greedy NMS keeps a box when none of its better suppressors is kept. Each round decides every
    box whose better suppressors are all decided (and every box a kept one suppresses); the number
    of rounds is the longest chain of suppressions, not the number of boxes.
    """
    count = len(order)
    kept = torch.zeros(count, dtype=torch.bool, device=order.device)
    undecided = torch.ones(count, dtype=torch.bool, device=order.device)
    while bool(undecided.any()):
        killed, blocked = torch.zeros_like(kept), torch.zeros_like(kept)
        killed[worse[kept[better]]] = True
        blocked[worse[undecided[better]]] = True
        ready = undecided & ~blocked
        kept |= ready & ~killed
        undecided &= ~(ready | killed)
    return order[kept[order]]


def pair_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a[k]`` and ``b[k]``, (K, 4) each, computed as torchvision's ``nms`` does."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    sides = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0.0)
    inter = sides[:, 0] * sides[:, 1]
    return inter / (area_a + area_b - inter)


def window_nms(found: Candidates, cells: torch.Tensor, shape: tuple[int, int, int], threshold: float) -> torch.Tensor:
    """torchvision's ``batched_nms`` for one pyramid level's windows (the same kept indices, best
    first), comparing each window only with the windows within ``WINDOW_REACH`` cells of it.

    Args:
        found, cells: the level's windows and their score-map cells (row-major, as
            ``level_candidates`` gives them).
        shape: the score maps' (B, h, w).
    """
    count, device = len(found.boxes), found.boxes.device
    order = found.scores.argsort(descending=True, stable=True)  # torchvision's order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count, device=device)
    _, height, width = shape
    key = (found.image * height + cells[:, 1]) * width + cells[:, 0]  # ascending
    steps = torch.arange(-WINDOW_REACH, WINDOW_REACH + 1, device=device)
    dy, dx = (d.reshape(-1) for d in torch.meshgrid(steps, steps, indexing="ij"))
    y, x = cells[:, 1:] + dy, cells[:, :1] + dx  # (K, 25) neighbouring cells
    target = key[:, None] + dy * width + dx
    at = torch.searchsorted(key, target.reshape(-1)).view_as(target).clamp(max=count - 1)
    source = torch.arange(count, device=device)[:, None].expand_as(target)
    pair = (y >= 0) & (y < height) & (x >= 0) & (x < width) & (key[at] == target) & (rank[source] < rank[at])
    better, worse = source[pair], at[pair]
    suppress = pair_iou(found.boxes[better], found.boxes[worse]) > threshold
    return greedy_keep(order, better[suppress], worse[suppress])


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, image: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy suppression by overlap over the smaller box, per image: indices kept, best first."""
    # Best first, ties in the order facenet-pytorch's NumPy suppression takes them (the reverse of
    # ``np.argsort``): two candidates that crop the same pixels get equal O-net scores, and which one
    # survives moves the face's box by a fraction of a pixel.
    order = torch.from_numpy(np.argsort(scores.cpu().numpy())[::-1].copy()).to(scores.device)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    better, worse = ((min_overlap(boxes) > threshold) & (image[:, None] == image[None, :])
                     & (rank[:, None] < rank[None, :])).nonzero(as_tuple=True)
    return greedy_keep(order, better, worse)


@dataclass
class Nets:
    """MTCNN's three stages as callables on normalised (N, 3, S, S) float32 batches, returning what
    facenet-pytorch's modules return: P-net (offsets, probabilities), R-net (offsets, probabilities),
    O-net (offsets, points, probabilities)."""

    pnet: Net
    rnet: Net
    onet: Net


def detect_faces(images: torch.Tensor, nets: Nets, min_face_size: float,
                 thresholds: tuple[float, float, float]) -> tuple[Candidates, torch.Tensor]:
    """MTCNN on a batch of equal-sized (B, H, W, 3) uint8 RGB images, on their device.

    Returns:
        the faces of all images (``Candidates.image`` says whose), best first within each image's
        suppression, and their (F, 5, 2) float32 points in image pixels.
    """
    integral = integral_image(images)
    found = propose(integral, nets.pnet, min_face_size, thresholds[0])
    if len(found.boxes):
        found = refine(integral, nets.rnet, found, thresholds[1])
    if len(found.boxes) == 0:  # the nets are not run on empty batches
        return found, torch.zeros((0, 5, 2), device=images.device)
    return output(integral, nets.onet, found, thresholds[2])


class OnnxNet(nn.Module):
    """One MTCNN stage run by ONNX Runtime on CPU. A module, so that forward hooks count and time it
    as they do the torch stage; it takes and returns what the torch stage does."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {self.input_name: pixels.contiguous().numpy()})
        return tuple(torch.from_numpy(out) for out in outputs)


def export_net(net: nn.Module, path: str | os.PathLike, size: int | None) -> Path:
    """Write one stage as an ONNX graph on normalised (N, 3, S, S) float32 pixels: N dynamic, and
    the sides too when ``size`` is ``None`` (P-net, which takes whole pyramid levels)."""
    axes = {0: "n"} if size is not None else {0: "n", 2: "height", 3: "width"}
    side = size or 2 * PNET_WINDOW
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net.eval().cpu(), (torch.zeros((2, 3, side, side)),), str(path), input_names=["pixels"],
                          dynamic_axes={"pixels": axes}, opset_version=ONNX_OPSET, dynamo=False)
    return Path(path)


def onnx_nets(nets: Nets, cache_dir: str | os.PathLike | None = None) -> Nets:
    """The three stages as ONNX Runtime CPU sessions, their graphs exported once and cached like the
    regressor's (``backends.default_cache_dir``, named by the sha256 of the weights)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stages = []
    for name, net, size in (("pnet", nets.pnet, None), ("rnet", nets.rnet, RNET_SIZE), ("onet", nets.onet, ONET_SIZE)):
        path = cache / f"mtcnn-{name}-{weights_digest(net)}.onnx"
        if not path.is_file():
            atomic_write(path, lambda tmp, net=net, size=size: export_net(net, tmp, size))
        stages.append(OnnxNet(cpu_session(path, memory_arena=False)))
    return Nets(*stages)


def load_nets(device: torch.device, backend: str = AUTO, cache_dir: str | os.PathLike | None = None) -> Nets:
    """facenet-pytorch's P-, R- and O-net with the weights in its wheel, in eval mode, run by
    ``backend``: "torch" on ``device``, "onnx" (ONNX Runtime, CPU only), or "auto" (torch on a GPU,
    ``DEFAULT_CPU_BACKEND`` on CPU)."""
    import facenet_pytorch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    if backend not in (AUTO, TORCH, ONNX):
        raise ValueError(f"detector backend must be one of {AUTO}, {TORCH}, {ONNX}; got {backend!r}")
    device = torch.device(device)
    if backend == AUTO:
        backend = TORCH if device.type != "cpu" else DEFAULT_CPU_BACKEND
    if backend == ONNX and device.type != "cpu":
        raise ValueError(f"detector backend {ONNX!r} runs on CPU only; got device {str(device)!r}")
    folder = Path(facenet_pytorch.__file__).parent / "data"
    nets = []
    for name, build in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        net = build(pretrained=False)
        net.load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        nets.append(net.eval().to(device))
    return onnx_nets(Nets(*nets), cache_dir) if backend == ONNX else Nets(*nets)
