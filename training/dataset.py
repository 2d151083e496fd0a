"""The torch ``Dataset`` of WFLW face crops with regression targets (the file formats are ``model.formats.wflw``)."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from model.codec import encode
from model.constants import CROP_PADDING, INPUT_SIZE, MIN_INPUT_SIZE
from model.geometry import box_to_crop, warp_crop
from model.image import read_image
from training.augment import AugmentParams, crop_points, draw_crop
from model.formats.wflw import BOX_MODES, Sample, crop_box, resolve_image

# Decoded images a WFLWDataset keeps per process (LRU), in bytes.
DECODED_CACHE_BYTES = 512 * 2**20


class WFLWDataset(Dataset):
    """Face crops with regression targets.

    Item ``i`` is a dict: ``image`` (S, S, 3) uint8 RGB crop (normalised on the device, see
    ``model.network.normalize``), ``target`` (98, 2) float32 crop pixels / S, ``weight`` (98,)
    float32 (1 where the point lies inside the crop), ``matrix`` (2, 3) float64 image -> crop map,
    ``index`` int.

    With ``augment`` set, the random flip / shift / scale / rotation of ``training.augment`` is drawn
    from a generator seeded by (seed, epoch, index): the same sample gets the same augmentation for
    a given epoch whatever the worker count, and a resumed run repeats it exactly. Call
    ``set_epoch`` before each epoch. The epoch lives in shared memory, so data-loader workers that
    persist across epochs see the new value (they hold copies of everything else).

    Decoded images stay in a per-process least-recently-used cache of up to ``cache_bytes``: a set
    that fits (the synthetic sets of the tests, a few hundred MB) is decoded once per process and
    each item costs one affine crop; WFLW's images (about 13 GB decoded) are mostly read again each
    epoch. Persistent data-loader workers each keep their own cache for the whole run.
    """

    def __init__(self, samples: list[Sample], images_dir: str | os.PathLike, *,
                 input_size: int = INPUT_SIZE, augment: AugmentParams | None = None,
                 box_mode: str = "landmarks", seed: int = 0,
                 cache_bytes: int = DECODED_CACHE_BYTES) -> None:
        if box_mode not in BOX_MODES:
            raise ValueError(f"box_mode must be one of {BOX_MODES}, got {box_mode!r}")
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} pixels, got {input_size}")
        self.samples = list(samples)
        self.images_dir = Path(images_dir)
        self.input_size = int(input_size)
        self.augment = augment
        self.box_mode = box_mode
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        for s in self.samples:  # fail at construction, not in a worker mid-epoch
            resolve_image(self.images_dir, s.image)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def load_image(self, relative: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB image at ``relative`` (inside the images folder), through the cache."""
        if relative in self._cache:
            self._cache.move_to_end(relative)
            return self._cache[relative]
        image = read_image(resolve_image(self.images_dir, relative), name=relative)
        if image.nbytes <= self.cache_bytes:
            self._cache[relative] = image
            self._cached_bytes += image.nbytes
            while self._cached_bytes > self.cache_bytes:
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return image

    def crop_square(self, index: int) -> tuple[np.ndarray, float]:
        """The un-augmented crop of item ``index``: center (2,) and side, image pixels."""
        return box_to_crop(crop_box(self.samples[index], self.box_mode), CROP_PADDING)

    def crop_geometry(self, index: int, image_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index``'s (2, 3) image -> crop matrix for the current epoch and its (98, 2) float32
        points in crop pixels (reordered when mirrored). Needs only the image width (the mirror)."""
        center, side = self.crop_square(index)
        rng = None if self.augment is None else np.random.default_rng([self.seed, self.epoch, index])
        matrix, flip = draw_crop(rng, self.augment, center, side, image_width, self.input_size)
        return matrix, crop_points(self.samples[index].landmarks, matrix, flip)

    def __getitem__(self, index: int) -> dict:
        image = self.load_image(self.samples[index].image)
        matrix, points = self.crop_geometry(index, image.shape[1])
        target, weight = encode(points, self.input_size)
        return {
            "image": torch.from_numpy(warp_crop(image, matrix, self.input_size)),
            "target": torch.from_numpy(target),
            "weight": torch.from_numpy(weight),
            "matrix": torch.from_numpy(matrix),
            "index": index,
        }
