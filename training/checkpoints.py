"""A training run's checkpoints: atomic saves, best.pth, the RNG state and resuming.

``checkpoint.pth`` is a plain dict: ``model``, ``optimizer``, ``scheduler``, ``epoch``,
``iteration``, ``rng``, ``config`` (``dataclasses.asdict`` of the resolved ``TrainConfig``, with
``input_size`` and ``flip_convention``: the flip test best.pth was chosen by), ``nme``,
``best_nme``, ``best_epoch``. Tensors, numbers, strings and lists only, so it loads with
``torch.load(..., weights_only=True)`` and with ``model.network.load_regressor``.
"""
from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.io import atomic_write
from model.network import read_checkpoint

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"


@dataclass
class Progress:
    """Where a run stands: the next epoch, the best evaluation so far and the last one."""

    start_epoch: int = 0
    best_nme: float = math.inf
    best_epoch: int = -1
    last: dict = field(default_factory=dict)


def rng_state() -> dict:
    """torch, Python (and CUDA) generator states as tensors, ints and lists."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (``model.io.atomic_write``: fsynced, then renamed)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


def link_best(work_dir: Path) -> None:
    """best.pth becomes the checkpoint just written (a hard link, a copy where links fail), atomically."""
    atomic_write(work_dir / BEST_NAME, lambda tmp: _link_or_copy(work_dir / CHECKPOINT_NAME, tmp))


def resume(work_dir: Path, model, optimizer, scheduler) -> Progress:
    """Load model, optimiser, scheduler and RNG state from WORK_DIR/checkpoint.pth; where to go on."""
    ckpt = read_checkpoint(work_dir / CHECKPOINT_NAME)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return Progress(ckpt["epoch"] + 1, ckpt["best_nme"], ckpt["best_epoch"])
