"""Fixtures of the training tests: the learning runs (``shared_data``, ``random_checkpoint`` and the
synthetic tree ``synthetic_root`` come from tests/conftest.py)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from training.dataset import WFLWDataset
from training.metrics import nme
from training.synthetic import write_synthetic_wflw
from model.formats.wflw import find_wflw_root, load_wflw_txt

# The learning proof's drawn faces: 64 x 64 images, written once per session.
LEARNING_FACES = dict(num_train=256, num_test=64, size=64, seed=0)
# Overrides of make_tiny_config (measured in docs/learning-proof.md).
# Fast run, default suite: 4 epochs x 16 steps of 16 faces at 32 px, lr x 0.1 for the last epoch.
LEARNING_SETTINGS = dict(input_size=32, batch_size=16, warmup_iters=10, epochs=4, milestones=[3],
                         eval_interval=4)
# Long run, `make test-all` / CI: 40 epochs x 16 steps, lr x 0.1 from epoch 32, the default recipe
# (mmpose-0.x), evaluated every 5 epochs keeping the best (as the recipe keeps best.pth).
# Measured (1 thread, seed 0): best NME / mean shape 0.705; 20 epochs gave 1.011 on the CI machines.
# Other seeds do worse on this tiny set (1.04-1.11), see docs/learning-proof.md.
LONG_LEARNING_SETTINGS = dict(input_size=32, batch_size=16, warmup_iters=10, epochs=40, milestones=[32],
                              eval_interval=5)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every training test runs torch on one thread. On the shared 2-core machines two threads
    spin-wait on each other: evaluating 64 faces at 32 px took 37 s with two, 4.5 s with one
    (docs/learning-proof.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_config(root: Path, work_dir: Path, **overrides):
    """A TrainConfig small enough for a CPU test (48-pixel crops, no pretrained weights).

    On the CPU even on a CUDA host: the exact comparisons (resume, ghost BN, the learning proofs'
    measured NMEs) assume deterministic fp32; the CUDA paths are measured by ``python -m bench.gpu``."""
    from training.train import TrainConfig

    settings = dict(wflw_root=str(root), work_dir=str(work_dir), input_size=48, workers=0, epochs=2,
                    batch_size=8, lr=1e-3, warmup_iters=4, milestones=[100], eval_interval=1,
                    pretrained="none", print_freq=1, seed=0, device="cpu")
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def tiny_config():
    return make_tiny_config


def mean_shape_nme(root: Path, input_size: int, box_mode: str = "landmarks") -> float:
    """Test NME of always predicting the training faces' mean shape in crop coordinates.

    The baseline a trained model must beat to show it reads the face, not just the average face.
    """
    tree = find_wflw_root(root)

    def targets(split: str) -> np.ndarray:
        ds = WFLWDataset(load_wflw_txt(tree.annotations(split)), tree.images, input_size=input_size,
                         box_mode=box_mode)
        return np.stack([ds[i]["target"].numpy() for i in range(len(ds))])

    train, test = targets("train"), targets("test")
    return float(nme(np.broadcast_to(train.mean(axis=0), test.shape), test).mean())


@pytest.fixture(scope="session")
def learning_root(tmp_path_factory) -> Path:
    """The learning proof's synthetic WFLW tree (``LEARNING_FACES``, seeded)."""
    root = tmp_path_factory.mktemp("learning_wflw")
    write_synthetic_wflw(root, **LEARNING_FACES)
    return root


def run_learning(root: Path, work: Path, **settings) -> dict:
    """Train from random weights (seeded); returns the config, test NME before and after, the
    mean-shape NME, the result of ``main`` and its wall and CPU seconds."""
    from training.train import _build_model, build_loaders, evaluate, main

    cfg = make_tiny_config(root, work, **settings)
    threads = torch.get_num_threads()
    # One thread: on 2 shared cores two spin-wait, 7 x the CPU and 2.4 x the wall time (docs/learning-proof.md).
    torch.set_num_threads(1)
    try:
        torch.manual_seed(cfg.seed)  # main builds its model after the same seeding
        _, test_loader, _ = build_loaders(cfg, 0, 1, cfg.batch_size)
        before = evaluate(_build_model(cfg), test_loader, torch.device("cpu"), cfg.flip_test)["nme"]
        baseline = mean_shape_nme(root, cfg.input_size, cfg.eval_box)
        wall, cpu = time.perf_counter(), time.process_time()
        result = main(cfg)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        torch.set_num_threads(threads)
    after = result["last"]["nme"]
    print(f"\nlearning run ({cfg.epochs * result['steps_per_epoch']} steps): test NME {100 * before:.1f}% "
          f"before, {100 * baseline:.1f}% mean shape, {100 * after:.1f}% after ({after / baseline:.2f} x "
          f"mean shape); {wall:.0f} s wall, {cpu:.0f} s CPU")
    return dict(cfg=cfg, before=before, baseline=baseline, after=after, result=result, wall=wall, cpu=cpu)


@pytest.fixture(scope="session")
def long_learning():
    """``run_learning`` with ``LONG_LEARNING_SETTINGS``: call it as ``long_learning(root, work_dir)``
    (a fixture, so that the slow test imports nothing from this conftest)."""
    return lambda root, work: run_learning(root, work, **LONG_LEARNING_SETTINGS)


@pytest.fixture(scope="session")
def learning_run(learning_root, tmp_path_factory) -> dict:
    """The fast learning run (``LEARNING_SETTINGS``), shared by the tests that read its outputs."""
    return run_learning(learning_root, tmp_path_factory.mktemp("learning"), **LEARNING_SETTINGS)

