"""A regressor with real landmarks for the benchmarks: trained on synthetic WFLW, cached.

The official checkpoint cannot be downloaded on the build machines, and random weights give
outputs in the hundreds, on which a 0.5 px bound says nothing. So the benchmarks train a small
run on ``training.synthetic`` faces with ``training.train`` (both unchanged, run as their CLIs)
and cache the result under ``bench/.cache/`` (gitignored). ``--weights`` skips all this.

Both steps show a progress bar with an ETA on stderr: the data generation its own, the training
one over all its optimiser steps (read off the training log lines), then "evaluating" until the run
ends; the training log itself is in the work folder's ``log.txt``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

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
# training.train's log lines: "N train faces, S steps per epoch, ..." once, then one
# "epoch E step s/S iter I loss ..." per optimiser step (with --print-freq 1).
STEPS_LINE = re.compile(r"\b(\d+) steps per epoch")
ITER_LINE = re.compile(r"\biter (\d+)\b")
# Characters of a failed run's stderr quoted in the error.
ERROR_TAIL = 3000


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
    print(f"training the benchmark checkpoint on synthetic WFLW into {work_dir} (a few minutes; "
          f"log: {work_dir / 'log.txt'})", flush=True)
    train_with_progress([sys.executable, "-m", "training.train", "--wflw-root", str(root), "--work-dir",
                         str(work_dir), "--epochs", str(EPOCHS), "--batch-size", str(BATCH_SIZE), "--lr", str(LR),
                         "--warmup-iters", str(WARMUP_ITERS), "--pretrained", "none", "--workers", "1",
                         "--eval-interval", str(EPOCHS), "--device", "cpu", "--recipe", RECIPE,
                         "--print-freq", "1"], EPOCHS)
    if not best.is_file():
        raise FileNotFoundError(f"training finished without writing {best}")
    return best


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"command failed with status {result.returncode}: {' '.join(command)}")


def train_with_progress(command: list[str], epochs: int) -> None:
    """Run a ``training.train`` command of ``epochs`` epochs (with ``--print-freq 1``) under one
    progress bar over all its optimiser steps (ETA to the last step), then "evaluating" until it
    ends. Its stdout (the log lines) feeds the bar; its stderr is kept and quoted when it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # log lines as they are written, not at exit
    with tempfile.TemporaryFile() as errors, tqdm(desc="training", unit="step", dynamic_ncols=True) as bar:
        with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errors, text=True) as proc:
            for line in proc.stdout:
                if steps := STEPS_LINE.search(line):
                    bar.reset(total=epochs * int(steps.group(1)))
                elif step := ITER_LINE.search(line):
                    bar.update(int(step.group(1)) - bar.n)
                    if bar.n == bar.total:
                        bar.set_description("evaluating")
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-ERROR_TAIL:]
            raise RuntimeError(f"command failed with status {proc.returncode}: {' '.join(command)}\n{tail}")


if __name__ == "__main__":
    print(bench_checkpoint())
