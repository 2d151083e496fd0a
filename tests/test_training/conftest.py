"""Fixtures of the training tests: a small synthetic WFLW tree and one short training run
(``shared_data`` comes from tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.network import LandmarkRegressor
from training.synthetic import write_synthetic_wflw


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """32 train and 8 test drawn faces, 64 x 64 images (seeded): the tree the training tests use."""
    root = tmp_path_factory.mktemp("synthetic_wflw")
    write_synthetic_wflw(root, num_train=32, num_test=8, size=64, seed=0)
    return root


def make_tiny_config(root: Path, work_dir: Path, **overrides):
    """A TrainConfig small enough for a CPU test (48-pixel crops, no pretrained weights)."""
    from training.train import TrainConfig

    settings = dict(wflw_root=str(root), work_dir=str(work_dir), input_size=48, workers=0, epochs=2,
                    batch_size=8, lr=1e-3, warmup_iters=4, milestones=[100], eval_interval=1,
                    pretrained="none", print_freq=1, seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def tiny_config():
    return make_tiny_config


@pytest.fixture(scope="session")
def learning_run(synthetic_root, tmp_path_factory):
    """The learning proof: 6 epochs x 4 steps of 8 drawn faces at 48 px from random weights."""
    work = tmp_path_factory.mktemp("learning")
    cfg = make_tiny_config(synthetic_root, work, epochs=6, eval_interval=6)
    from training.train import build_loaders, evaluate, main

    torch.manual_seed(cfg.seed)  # main builds its model after the same seeding
    _, test_loader, _ = build_loaders(cfg, 0, 1, cfg.batch_size)
    before = evaluate(LandmarkRegressor(), test_loader, torch.device("cpu"))["nme"]
    result = main(cfg)
    print(f"\nlearning test: test NME {100 * before:.1f}% before, {100 * result['last']['nme']:.1f}% after")
    return cfg, before, result
