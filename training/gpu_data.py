"""The optional GPU data path of ``training.train --gpu-data``, for machines with few CPU cores.

Each training face is decoded and cut once, with margin, into a uint8 window kept on the device
(``GPUFaceBank``). Every step then draws the recipe's flip / shift / scale / rotation with the
same per-(seed, epoch, index) generator as ``WFLWDataset`` (``WFLWDataset.crop_geometry``), and
cuts the crops from the windows on the device with ``model.geometry.gpu_crops``
(``affine_grid`` + ``grid_sample``). Points, targets and weights are the CPU path's, bit for bit;
crops equal the CPU path's ``cv2.warpAffine`` of the full image within ``gpu_crops``' tolerance
(a window holds every pixel any draw can reach, ``training.augment.crop_reach``, at the image's
own resolution). Faces whose crop side exceeds ``max_resolution`` x the input size are stored
downscaled (``cv2.INTER_AREA``) to bound the memory; only their crops differ from the CPU path.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.utils.data import DistributedSampler

from model.codec import encode
from model.geometry import gpu_crops, invert_affine
from training.augment import compose, crop_reach
from training.dataset import WFLWDataset

# Source pixels per crop pixel (per axis, at augmentation scale 1) a window keeps at most.
MAX_RESOLUTION = 4.0
# Extra window pixels around the reach, for the bilinear neighbours.
BORDER_PX = 2


class GPUFaceBank:
    """Every face of ``dataset`` cut once with margin, as (3, n, n) uint8 windows on ``device``.

    Attributes:
        windows: one (3, n, n) uint8 tensor per face.
        to_window: (N, 2, 3) float64 image-pixel -> window-pixel maps.
        widths: (N,) widths of the source images (the mirror of a flip needs them).
        nbytes: device memory the windows hold.
    """

    def __init__(self, dataset: WFLWDataset, device: torch.device, max_resolution: float = MAX_RESOLUTION) -> None:
        if max_resolution <= 0:
            raise ValueError(f"max_resolution must be positive, got {max_resolution}")
        self.dataset = dataset
        self.device = torch.device(device)
        self.reach = math.sqrt(2.0) / 2.0 if dataset.augment is None else crop_reach(dataset.augment)
        self.max_resolution = float(max_resolution)
        self.windows: list[torch.Tensor] = []
        self.to_window = np.empty((len(dataset), 2, 3))
        self.widths = np.empty(len(dataset), dtype=np.int64)
        for index in range(len(dataset)):
            window, self.to_window[index], self.widths[index] = self._cut(index)
            self.windows.append(torch.from_numpy(window).permute(2, 0, 1).contiguous().to(self.device))
        self.nbytes = sum(w.numel() for w in self.windows)

    def _cut(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(n, n, 3) uint8 window of face ``index``, its (2, 3) image -> window map, the image width."""
        image = self.dataset.load_image(self.dataset.samples[index].image)
        center, side = self.dataset.crop_square(index)
        half = self.reach * side + BORDER_PX
        x0, y0 = (math.floor(v - half) for v in center)
        n = math.ceil(2 * half) + 1
        window = np.zeros((n, n, 3), np.uint8)  # outside the image: black, as warpAffine's border
        h, w = image.shape[:2]
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
        if right > left and bottom > top:
            window[top - y0:bottom - y0, left - x0:right - x0] = image[top:bottom, left:right]
        to_window = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
        factor = self.max_resolution * self.dataset.input_size / side
        if factor < 1.0:  # a face much larger than the crop: keep max_resolution pixels per crop pixel
            m = max(int(round(n * factor)), 1)
            window = cv2.resize(window, (m, m), interpolation=cv2.INTER_AREA)
            # pixel centres: window x' = (x + 0.5) x m / n - 0.5
            ratio = m / n
            to_window = compose(np.array([[ratio, 0.0, 0.5 * ratio - 0.5], [0.0, ratio, 0.5 * ratio - 0.5]]),
                                to_window)
        return window, to_window, w

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, indices) -> dict:
        """The training items ``indices`` for the dataset's current epoch, on the device.

        Returns the ``WFLWDataset`` item keys batched: ``image`` (B, S, S, 3) float32 0-255 crops,
        ``target`` (B, 98, 2), ``weight`` (B, 98), ``matrix`` (B, 2, 3) image -> crop, ``index`` (B,).
        """
        indices = [int(i) for i in indices]
        size = self.dataset.input_size
        matrices, targets, weights, window_maps = [], [], [], []
        for i in indices:
            matrix, points = self.dataset.crop_geometry(i, int(self.widths[i]))
            target, weight = encode(points, size)
            matrices.append(matrix)
            targets.append(target)
            weights.append(weight)
            window_maps.append(compose(matrix, invert_affine(self.to_window[i])))
        height = max(self.windows[i].shape[1] for i in indices)
        width = max(self.windows[i].shape[2] for i in indices)
        stack = torch.zeros((len(indices), 3, height, width), dtype=torch.uint8, device=self.device)
        for row, i in enumerate(indices):
            window = self.windows[i]
            stack[row, :, :window.shape[1], :window.shape[2]] = window
        crops = gpu_crops(stack, np.stack(window_maps), size, torch.arange(len(indices)))
        return {"image": crops, "target": self._stacked(targets), "weight": self._stacked(weights),
                "matrix": torch.from_numpy(np.stack(matrices)), "index": torch.tensor(indices)}


    def _stacked(self, arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True)


class GPUBatches:
    """A loader over a ``GPUFaceBank``: batches of ``batch_size`` in the order of ``sampler``.

    Has what the training loop uses of a ``DataLoader``: ``dataset`` (with ``set_epoch``),
    ``sampler`` (with ``set_epoch``), ``len()`` and iteration.
    """

    def __init__(self, bank: GPUFaceBank, batch_size: int, sampler: DistributedSampler) -> None:
        self.bank = bank
        self.dataset = bank.dataset
        self.batch_size = int(batch_size)
        self.sampler = sampler

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = list(self.sampler)
        for start in range(0, len(order), self.batch_size):
            yield self.bank.batch(order[start:start + self.batch_size])
