"""A regressor with real landmarks for the benchmarks: trained on synthetic WFLW, cached.

The official checkpoint cannot be downloaded on the build machines, and random weights give
outputs in the hundreds, on which a 0.5 px bound says nothing. So the benchmarks train a small
run on ``training.synthetic`` faces with ``training.train`` (both unchanged, run as their CLIs)
and cache the result under ``bench/.cache/`` (gitignored). ``--weights`` skips all this.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from model.constants import INPUT_SIZE

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
REPO = Path(__file__).resolve().parents[1]

# The training run: a few minutes of 2-core CPU at the published input size (INPUT_SIZE, the
# training default; the synthetic photos are drawn at that side too) from scratch (no ImageNet
# weights offline). Enough for landmarks that follow the drawn face, not for accuracy.
NUM_TRAIN, NUM_TEST, SEED = 160, 32, 0
EPOCHS, BATCH_SIZE, LR, WARMUP_ITERS = 2, 16, 1e-3, 5
# mmpose-1.x's head starts at the crop centre (bias 0.5); the 0.x head starts at the crop corner
# (bias 0), which two epochs from scratch do not undo.
RECIPE = "mmpose-1.x"


def synthetic_root() -> Path:
    """The synthetic WFLW tree used for training and for the benchmarks' test faces."""
    root = CACHE_DIR / "synthetic-wflw"
    if not (root / "WFLW_images").is_dir():
        _run([sys.executable, "-m", "training.synthetic", str(root), "--num-train", str(NUM_TRAIN),
              "--num-test", str(NUM_TEST), "--size", str(INPUT_SIZE), "--seed", str(SEED)])
    return root


def bench_checkpoint() -> Path:
    """Path of the cached synthetic-trained checkpoint, training it first when missing."""
    work_dir = CACHE_DIR / "synthetic-train"
    best = work_dir / "best.pth"
    if best.is_file():
        return best
    root = synthetic_root()
    print(f"training the benchmark checkpoint on synthetic WFLW into {work_dir} (a few minutes)", flush=True)
    _run([sys.executable, "-m", "training.train", "--wflw-root", str(root), "--work-dir", str(work_dir),
          "--epochs", str(EPOCHS), "--batch-size", str(BATCH_SIZE), "--lr", str(LR),
          "--warmup-iters", str(WARMUP_ITERS), "--pretrained", "none", "--workers", "1",
          "--eval-interval", str(EPOCHS), "--device", "cpu", "--recipe", RECIPE])
    if not best.is_file():
        raise FileNotFoundError(f"training finished without writing {best}")
    return best


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"command failed with status {result.returncode}: {' '.join(command)}")


if __name__ == "__main__":
    print(bench_checkpoint())
