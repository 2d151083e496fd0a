"""The GPU data path (training.gpu_data), run on CPU tensors against the CPU path (WFLWDataset)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_model.test_geometry import GPU_CROP_MAX_TOLERANCE, GPU_CROP_MEAN_TOLERANCE
from training.dataset import WFLWDataset
from training.gpu_data import GPUBatches, GPUFaceBank
from training.recipes import RECIPES
from training.train import build_loaders
from model.formats.wflw import find_wflw_root, load_wflw_txt


@pytest.mark.parametrize("recipe", ["mmpose-0.x", "mmpose-1.x"])
def test_gpu_crops_equal_the_cpu_path(synthetic_root, recipe):
    """Same draws: the same targets, weights and matrices bit for bit, and crops equal to the CPU
    path's cv2.warpAffine of the full image within gpu_crops' tolerance, over two epochs of the
    recipe's flips, shifts, scales and rotations (the windows hold every pixel a draw reaches)."""
    tree = find_wflw_root(synthetic_root)
    ds = WFLWDataset(load_wflw_txt(tree.annotations("train")), tree.images, input_size=48,
                     augment=RECIPES[recipe].augment, seed=3)
    bank = GPUFaceBank(ds, torch.device("cpu"))
    assert len(bank) == len(ds) and bank.nbytes == sum(w.numel() for w in bank.windows)
    indices = list(range(len(ds)))
    for epoch in range(2):
        ds.set_epoch(epoch)
        batch = bank.batch(indices)
        items = [ds[i] for i in indices]
        for key in ("target", "weight", "matrix"):
            torch.testing.assert_close(batch[key], torch.stack([item[key] for item in items]), rtol=0, atol=0)
        assert batch["index"].tolist() == indices
        expected = torch.stack([item["image"] for item in items]).float()
        assert batch["image"].shape == expected.shape == (len(ds), 48, 48, 3)
        diff = (batch["image"] - expected).abs()
        assert diff.mean() < GPU_CROP_MEAN_TOLERANCE and diff.max() < GPU_CROP_MAX_TOLERANCE
        assert expected.std() > 20  # real content, not two black crops


def test_large_faces_are_stored_downscaled(synthetic_root):
    """A face over max_resolution x the crop is kept at that resolution: less memory, same points,
    a crop close to (not equal to) the full-resolution one."""
    tree = find_wflw_root(synthetic_root)
    ds = WFLWDataset(load_wflw_txt(tree.annotations("test"))[:4], tree.images, input_size=16,
                     augment=RECIPES["mmpose-0.x"].augment, seed=0)
    full, small = GPUFaceBank(ds, torch.device("cpu")), GPUFaceBank(ds, torch.device("cpu"), max_resolution=1.0)
    assert small.nbytes < full.nbytes / 2
    a, b = full.batch(range(4)), small.batch(range(4))
    torch.testing.assert_close(a["target"], b["target"], rtol=0, atol=0)
    assert (a["image"] - b["image"]).abs().mean() < 12  # resampled: blurrier, the same face


def test_build_loaders_gpu_data(synthetic_root, tmp_path, tiny_config):
    """--gpu-data: the training loader is GPUBatches over the same sampler order as the DataLoader."""
    cfg = tiny_config(synthetic_root, tmp_path, gpu_data=True, input_size=32)
    train_loader, _, _ = build_loaders(cfg, 0, 1, micro_batch=8, device=torch.device("cpu"))
    assert isinstance(train_loader, GPUBatches) and len(train_loader) == 4
    train_loader.sampler.set_epoch(1)
    train_loader.dataset.set_epoch(1)
    batches = list(train_loader)
    order = np.concatenate([b["index"].numpy() for b in batches])
    assert order.tolist() == list(train_loader.sampler) and sorted(order.tolist()) == list(range(32))
    assert all(b["image"].shape == (8, 32, 32, 3) for b in batches)


def test_train_with_gpu_data(synthetic_root, tmp_path, tiny_config):
    """One epoch of `training.train --gpu-data` (here on CPU tensors): it trains and evaluates."""
    from training.train import main

    result = main(tiny_config(synthetic_root, tmp_path, gpu_data=True, epochs=1, input_size=32, device="cpu"))
    log = (tmp_path / "log.txt").read_text()
    assert "gpu data True" in log and "epoch 0 done: loss" in log and "nan" not in log
    assert np.isfinite(result["last"]["nme"])
