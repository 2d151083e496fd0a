"""The torch Dataset of face crops (training.dataset) and the loaders training.train builds over it."""
from __future__ import annotations

import os

import pytest
import torch

from model.layout import NUM_LANDMARKS
from training.augment import AugmentParams
from training.dataset import WFLWDataset
from training.recipes import RECIPES
from training.train import build_loaders
from model.formats.wflw import Sample, find_wflw_root, load_wflw_txt


def test_dataset_items(synthetic_root):
    tree = find_wflw_root(synthetic_root)
    samples = load_wflw_txt(tree.annotations("test"))
    ds = WFLWDataset(samples, tree.images, input_size=48)
    item = ds[0]
    assert item["image"].shape == (48, 48, 3) and item["image"].dtype == torch.uint8
    assert item["target"].shape == (NUM_LANDMARKS, 2) and item["weight"].shape == (NUM_LANDMARKS,)
    # landmark-box crops with 1.25 padding keep every point inside
    assert torch.all(item["weight"] == 1) and torch.all((item["target"] > 0) & (item["target"] < 1))
    bad = Sample("../outside.jpg", samples[0].landmarks, samples[0].box, None)
    with pytest.raises(ValueError, match="leads outside"):
        WFLWDataset([bad], tree.images)


def test_dataset_decodes_each_image_once(synthetic_root, monkeypatch):
    import training.dataset as dataset_module

    tree = find_wflw_root(synthetic_root)
    samples = load_wflw_txt(tree.annotations("train"))[:3]
    decoded = []
    read = dataset_module.read_image
    monkeypatch.setattr(dataset_module, "read_image", lambda path, name=None: decoded.append(name) or read(path, name=name))
    ds = WFLWDataset(samples, tree.images, input_size=32, augment=AugmentParams(), seed=0)
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
    assert decoded == [s.image for s in samples]
    decoded.clear()
    two = WFLWDataset(samples, tree.images, input_size=32, cache_bytes=2 * 64 * 64 * 3)  # two 64 px images
    for i in (0, 1, 2, 1, 0):
        two[i]
    assert decoded == [samples[i].image for i in (0, 1, 2, 0)]  # 0 was the least recently used


def test_augmentation_follows_the_epoch(synthetic_root):
    """Same (seed, epoch, index): the same crop; another epoch: another draw."""
    tree = find_wflw_root(synthetic_root)
    ds = WFLWDataset(load_wflw_txt(tree.annotations("train"))[:4], tree.images, input_size=32,
                     augment=RECIPES["mmpose-1.x"].augment, seed=0)
    first = [ds[i]["target"] for i in range(4)]
    ds.set_epoch(1)
    assert ds.epoch == 1
    assert not all(torch.equal(a, ds[i]["target"]) for i, a in enumerate(first))
    ds.set_epoch(0)
    assert all(torch.equal(a, ds[i]["target"]) for i, a in enumerate(first))


def _with_pid(getitem):
    def wrapped(self, index):
        return {**getitem(self, index), "pid": os.getpid()}
    return wrapped


def test_loader_workers_persist_across_epochs(synthetic_root, tmp_path, tiny_config, monkeypatch):
    """build_loaders' workers live for the whole run (train and test loaders): the items of two epochs
    come from the same worker processes, and those workers see each new epoch's augmentation."""
    monkeypatch.setattr(WFLWDataset, "__getitem__", _with_pid(WFLWDataset.__getitem__))
    cfg = tiny_config(synthetic_root, tmp_path, workers=2, input_size=32, recipe="mmpose-1.x")
    train_loader, test_loader, _ = build_loaders(cfg, 0, 1, micro_batch=8)
    assert train_loader.persistent_workers and test_loader.persistent_workers
    train_pids, test_pids, targets = [], [], []
    for epoch in range(2):
        train_loader.sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        batches = list(train_loader)
        train_pids.append({int(p) for b in batches for p in b["pid"]})
        targets.append({int(i): t for b in batches for i, t in zip(b["index"], b["target"])})
        test_pids.append({int(p) for b in test_loader for p in b["pid"]})
    assert len(train_pids[0]) == 2 and train_pids[0] == train_pids[1] and os.getpid() not in train_pids[0]
    assert len(test_pids[0]) >= 1 and test_pids[0] == test_pids[1] and os.getpid() not in test_pids[0]
    # the workers read the epoch set in this process: epoch 1's items are this process's epoch 1 draws
    dataset = train_loader.dataset
    for index in (0, 5, 17):
        torch.testing.assert_close(targets[1][index], dataset[index]["target"], rtol=0, atol=0)
    assert any(not torch.equal(targets[0][i], targets[1][i]) for i in targets[0])
