"""One batched path from crop squares to points: crop -> runner -> decode, across images.

Every path that runs the network on faces goes through ``FaceBatcher``: ``Predictor.predict`` and its
siblings (one image at a time, all its faces in one forward), ``training.evaluate`` (thousands of
WFLW faces in forwards of ``batch_size`` faces gathered across images) and ``model.annotate``
(forwards of exactly ``batch_size`` crops, padded, so a face's result never depends on the faces
that share its forward). The forwards always go through the predictor's *runner*: its own backend,
or the app's inference engine. With flip test the mirrored crops go into the same forward as the
originals (``model.codec.flip_pair``), and each face gets its flip error.

Where the crops are cut is the runner's business: a runner with a ``crop_device`` (the predictor's
own torch backend on CUDA) is given float tensors cut on that device by ``model.geometry.gpu_crops``
from the image uploaded once; any other runner gets uint8 numpy crops from ``cv2.warpAffine``.

``prefetched`` is the read-ahead that feeds it: a function mapped over items on a small thread
pool, results in order, a bounded number computed ahead.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Iterator, TypeVar

import numpy as np
import torch

from model.codec import DEFAULT_FLIP_CONVENTION, decode, predict_crops
from model.geometry import gpu_crops, warp_crops
from model.layout import NUM_LANDMARKS

# What runs the network: (N, S, S, 3) crops -> (N, 98, 2) float32 normalised coordinates.
Runner = Callable[[np.ndarray], np.ndarray]
# One image's work: (key, (H, W, 3) uint8 RGB image, (F, 2, 3) image -> crop matrices).
Item = tuple[Hashable, np.ndarray, np.ndarray]
# One image's result: (key, (F, 98, 2) float32 image pixels, (F,) float64 flip errors in % of the
# inter-ocular distance, NaN where undefined; ``None`` without flip test).
Result = tuple[Hashable, np.ndarray, "np.ndarray | None"]

T = TypeVar("T")
R = TypeVar("R")


def crop_device(runner: Runner) -> torch.device | None:
    """The device a runner wants its crops cut on (its ``crop_device``), ``None`` for numpy crops."""
    return getattr(runner, "crop_device", None)


@dataclass(eq=False)
class _Job:
    """One image between its crops and its result."""

    key: Hashable
    matrices: np.ndarray
    coords: np.ndarray = field(init=False)
    errors: np.ndarray = field(init=False)
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.coords = np.zeros((len(self.matrices), NUM_LANDMARKS, 2), np.float32)
        self.errors = np.full(len(self.matrices), np.nan)
        self.left = len(self.matrices)


class FaceBatcher:
    """Landmarks for the crop squares of many images, in forwards of ``batch_size`` faces.

    Args:
        runner: runs the network (see ``Runner``); a ``crop_device`` attribute moves cropping there.
        size: crop side in pixels (the network's input size).
        flip_test: also run the mirrored crops (same forward) and average; gives flip errors.
        flip_convention: how a mirrored prediction maps back (``model.codec``).
        batch_size: faces per forward, gathered across images (the flip test adds their mirrors);
            ``None``: each image's faces in one forward of their own.
        pad: make every forward exactly ``batch_size`` crops (black crops fill the last one), so a
            result never depends on the other crops of its forward (``model.annotate``'s resumes).
        crops_on_device: a device: cut the crops as tensors there whatever the runner says (the
            runner must then take tensors); ``False``: numpy crops; ``None``: the runner's
            ``crop_device`` decides.
        timings: when given, the milliseconds spent cutting crops ("crops"), in the runner
            ("network", flip test included) and mapping points back ("points") are added to it.
    """

    def __init__(self, runner: Runner, size: int, *, flip_test: bool = True,
                 flip_convention: str = DEFAULT_FLIP_CONVENTION, batch_size: int | None = None, pad: bool = False,
                 crops_on_device: torch.device | bool | None = None, timings: dict[str, float] | None = None) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a whole number of at least 1 (or None), got {batch_size!r}")
        if pad and batch_size is None:
            raise ValueError("pad needs a batch_size: forwards are padded to it")
        self.runner, self.size, self.flip_test, self.flip_convention = runner, int(size), bool(flip_test), flip_convention
        self.batch_size, self.pad, self.timings = batch_size, bool(pad), timings
        if crops_on_device is None:
            self.device = crop_device(runner)
        else:
            self.device = None if crops_on_device is False else torch.device(crops_on_device)
        self._crops: list = []                         # chunks of crops waiting for a forward
        self._owners: list[tuple[_Job, int]] = []      # (image, face) of each waiting crop

    def run(self, items: Iterable[Item]) -> Iterator[Result]:
        """Each item's ``(key, landmarks, flip_errors)`` in input order, as soon as all its faces ran.

        Reading ``items`` lazily, the batcher holds at most about ``batch_size`` crops plus one
        image's faces.
        """
        pending: deque[_Job] = deque()
        for key, image, matrices in items:
            matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 2, 3)
            job = _Job(key, matrices)
            pending.append(job)
            if len(matrices):
                self._crops.append(self._timed("crops", lambda: self._cut(image, matrices)))
                self._owners.extend((job, i) for i in range(len(matrices)))
            limit = self.batch_size if self.batch_size is not None else len(self._owners)
            while self._owners and len(self._owners) >= limit:
                self._forward(limit)
            yield from self._finished(pending)
        while self._owners:
            self._forward(min(len(self._owners), self.batch_size or len(self._owners)))
        yield from self._finished(pending)

    def _timed(self, stage: str, work: Callable[[], T]) -> T:
        if self.timings is None:
            return work()
        start = time.perf_counter()
        out = work()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[stage] = self.timings.get(stage, 0.0) + 1000.0 * (time.perf_counter() - start)
        return out

    def _cut(self, image: np.ndarray, matrices: np.ndarray):
        if self.device is None:
            return warp_crops(image, matrices, self.size)
        pixels = image if image.flags.writeable else image.copy()  # torch takes only writable arrays
        uploaded = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device).permute(2, 0, 1)[None]
        return gpu_crops(uploaded, matrices, self.size).round_()  # warpAffine's crops are whole grey levels

    def _forward(self, count: int) -> None:
        join = torch.cat if self.device is not None else np.concatenate
        crops = self._crops[0] if len(self._crops) == 1 else join(self._crops)
        owners, self._owners = self._owners[:count], self._owners[count:]
        self._crops = [crops[count:]] if self._owners else []
        crops = crops[:count]
        if self.pad and count < self.batch_size:
            filler = (torch.zeros if self.device is not None else np.zeros)(
                (self.batch_size - count, *crops.shape[1:]), dtype=crops.dtype,
                **({"device": self.device} if self.device is not None else {}))
            crops = join([crops, filler])
        coords, errors = self._timed("network", lambda: predict_crops(self.runner, crops, self.size, self.flip_test,
                                                                      self.flip_convention))
        for k, (job, i) in enumerate(owners):
            job.coords[i] = coords[k]
            if errors is not None:
                job.errors[i] = errors[k]
            job.left -= 1

    def _finished(self, pending: deque[_Job]) -> Iterator[Result]:
        while pending and pending[0].left == 0:
            job = pending.popleft()
            points = self._timed("points", lambda: decode(job.coords, job.matrices, self.size))
            yield job.key, points, (job.errors if self.flip_test else None)


def prefetched(work: Callable[[T], R], items: Iterable[T], ahead: int = 4, workers: int = 2) -> Iterator[R]:
    """``work(item)`` for each item, in order, on ``workers`` threads, at most ``ahead`` results
    computed before they are asked for (decoding and hashing release the GIL). Closing the iterator
    early (a cancel, an error downstream) stops submitting new work."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
