from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.network import LandmarkRegressor, load_regressor
from training.train import (BN_GROUP, RECIPES, GhostBatchNorm2d, TrainConfig, _build_model, lr_factor, main,
                            parse_args, resolve_config, use_ghost_batchnorm, warmup_factor)
from tests.helpers import REPO


def test_defaults_are_the_published_recipe():
    cfg = resolve_config(parse_args(["--wflw-root", "data"]))
    assert cfg.recipe == "mmpose-0.x"  # the config that produced the published file
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup_iters, cfg.warmup_ratio) == (210, 512, 5e-4, 500, 0.001)
    assert (cfg.milestones, cfg.gamma, cfg.input_size, cfg.bn_group) == ([170, 200], 0.1, 256, 64)
    assert (cfg.eval_interval, cfg.flip_convention) == (1, "0.x")
    assert cfg.pretrained == "imagenet" and cfg.flip_test and not cfg.resume and not cfg.amp
    one_x = resolve_config(parse_args(["--wflw-root", "d", "--recipe", "mmpose-1.x"]))
    assert (one_x.eval_interval, one_x.flip_convention, one_x.warmup_iters) == (10, "1.x", 500)
    cfg = parse_args(["--wflw-root", "d", "--milestones", "3", "4", "--no-flip-test", "--resume", "--amp",
                      "--eval-interval", "2", "--flip-convention", "1.x", "--warmup-ratio", "0.5"])
    assert cfg.milestones == [3, 4] and not cfg.flip_test and cfg.resume and cfg.amp
    assert resolve_config(cfg).eval_interval == 2 and cfg.flip_convention == "1.x" and cfg.warmup_ratio == 0.5
    with pytest.raises(SystemExit):
        parse_args(["--wflw-root", "d", "--recipe", "mmpose-2.x"])


def test_warmup_is_mmcv_linear():
    """lr = base x (1 - (1 - 0.001) x (1 - iter / 500)), worked by hand."""
    assert warmup_factor(0, 500, 0.001) == pytest.approx(0.001)
    assert warmup_factor(250, 500, 0.001) == pytest.approx(0.5005)    # 1 - 0.999 x 0.5
    assert warmup_factor(499, 500, 0.001) == pytest.approx(0.998002)  # 1 - 0.999 x 0.002
    assert warmup_factor(500, 500, 0.001) == 1.0


def test_lr_schedule():
    cfg = resolve_config(TrainConfig(wflw_root="x"))
    steps = 15  # 7,500 faces / 512
    assert lr_factor(0, steps, cfg) == pytest.approx(0.001)
    assert lr_factor(250, steps, cfg) == pytest.approx(0.5005)
    assert lr_factor(500, steps, cfg) == 1.0
    assert lr_factor(170 * steps - 1, steps, cfg) == 1.0
    assert lr_factor(170 * steps, steps, cfg) == pytest.approx(0.1)
    assert lr_factor(200 * steps, steps, cfg) == pytest.approx(0.01)


def test_bad_settings(tmp_path, synthetic_root, tiny_config):
    with pytest.raises(ValueError, match="per-process batch 8 must be a multiple of max_images_per_step 3"):
        main(tiny_config(synthetic_root, tmp_path, max_images_per_step=3))
    with pytest.raises(ValueError, match="'resnet' is not supported"):
        main(tiny_config(synthetic_root, tmp_path, pretrained="resnet"))
    with pytest.raises(ValueError, match=r"recipe 'mmpose-2.x' is not supported: use one of \('mmpose-0.x'"):
        main(tiny_config(synthetic_root, tmp_path, recipe="mmpose-2.x"))
    with pytest.raises(ValueError, match="--eval-box 'face' is not supported"):
        main(tiny_config(synthetic_root, tmp_path, eval_box="face"))
    with pytest.raises(ValueError, match="micro-batch 8 must be a multiple of bn_group 3"):
        main(tiny_config(synthetic_root, tmp_path, bn_group=3))
    assert not (tmp_path / "log.txt").exists()  # refused before anything was written


@pytest.mark.parametrize("recipe, std, bias", [("mmpose-0.x", 0.01, 0.0), ("mmpose-1.x", 0.001, 0.5)])
def test_new_head_follows_the_recipe(random_checkpoint, recipe, std, bias):
    torch.manual_seed(0)
    model = _build_model(TrainConfig(wflw_root="x", pretrained="none", recipe=recipe))
    assert (RECIPES[recipe].head_init_std, RECIPES[recipe].head_init_bias) == (std, bias)
    torch.testing.assert_close(model.fc.bias, torch.full_like(model.fc.bias, bias))
    assert abs(model.fc.weight.std().item() - std) < 0.02 * std  # 2048 x 196 draws
    assert abs(model.fc.weight.mean().item()) < 0.01 * std
    # a checkpoint keeps its own head
    loaded = _build_model(TrainConfig(wflw_root="x", pretrained=str(random_checkpoint), recipe=recipe))
    torch.testing.assert_close(loaded.fc.bias, load_regressor(random_checkpoint).fc.bias)


def _bn_pair(channels: int, group: int, seed: int = 0):
    torch.manual_seed(seed)
    plain = torch.nn.BatchNorm2d(channels)
    torch.nn.init.uniform_(plain.weight, 0.5, 1.5)
    torch.nn.init.uniform_(plain.bias, -0.5, 0.5)
    ghost = use_ghost_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(channels)), group)[0]
    ghost.load_state_dict(plain.state_dict())
    return plain.train(), ghost.train()


@pytest.mark.parametrize("group, batch", [(3, 12), (3, 11), (BN_GROUP, 2 * BN_GROUP)])
def test_ghost_batchnorm_equals_separate_batches(group, batch):
    """Statistics over groups of ``group`` images: outputs equal a plain BatchNorm fed the groups one
    after the other (the last group may be short, as a last batch is); the running statistics equal
    a plain BatchNorm fed the first group only (rank 0 of 8 processes keeps its own)."""
    plain, ghost = _bn_pair(4, group)
    whole, rank0 = _bn_pair(4, group)
    rank0 = torch.nn.BatchNorm2d(4).train()
    rank0.load_state_dict(plain.state_dict())
    assert isinstance(ghost, GhostBatchNorm2d) and ghost.group == group
    x = torch.randn(batch, 4, 3, 3) * 2 + 1
    x[group:] += 3  # groups with different statistics, so that grouping matters
    for _ in range(2):  # two steps: the running statistics build up the same way
        expected = torch.cat([plain(part) for part in x.split(group)])
        rank0(x[:group])
        got = ghost(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert not torch.allclose(got, whole(x), atol=1e-2)  # one batch of the whole differs
        x = x.flip(0) * 0.5
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(rank0, name), rtol=0, atol=1e-6)
    assert ghost.num_batches_tracked.item() == 2
    # evaluation mode uses the running statistics, as plain BatchNorm does
    torch.testing.assert_close(ghost.eval()(x), rank0.eval()(x), rtol=0, atol=1e-6)


def test_ghost_batchnorm_in_the_network_keeps_checkpoints():
    model = use_ghost_batchnorm(LandmarkRegressor(), 2)
    ghosts = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert ghosts and all(isinstance(m, GhostBatchNorm2d) for m in ghosts)
    assert set(model.state_dict()) == set(LandmarkRegressor().state_dict())  # same keys: load_regressor reads it


def test_test_nme_falls(learning_run):
    """The test NME falls from the head's start. This short run does not prove the model reads
    faces: it ends above the mean shape's NME (docs/learning-proof.md); the slow test below does."""
    run = learning_run
    assert run["after"] < run["before"]


@pytest.mark.slow
def test_learns_faces_beyond_the_mean_shape(learning_root, long_learning, tmp_path):
    """320 steps from random weights with the default recipe (mmpose-0.x: its augmentation, head
    start and flip test): the best checkpoint (the one the recipe keeps) must beat always predicting
    the training set's mean face on held-out faces, i.e. the model reads pose and shape, not just
    the average face. Seed-sensitive on this tiny set (docs/learning-proof.md)."""
    run = long_learning(learning_root, tmp_path / "long")
    best = run["result"]["best_nme"]
    print(f"\n[learning] before {100 * run['before']:.1f}% mean shape {100 * run['baseline']:.2f}% "
          f"best {100 * best:.2f}% ({best / run['baseline']:.3f} x mean shape), last {100 * run['after']:.2f}%")
    assert best < 0.9 * run["baseline"] < run["before"]


def test_checkpoint_contents(learning_run):
    cfg, result = learning_run["cfg"], learning_run["result"]
    work = Path(cfg.work_dir)
    ckpt = torch.load(work / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config"} <= set(ckpt)
    last = cfg.epochs - 1
    assert ckpt["epoch"] == last and ckpt["iteration"] == cfg.epochs * result["steps_per_epoch"]
    assert ckpt["config"]["input_size"] == cfg.input_size and not any(k.startswith("module.") for k in ckpt["model"])
    model = load_regressor(work / "best.pth")
    assert isinstance(model, LandmarkRegressor) and not model.training
    log = (work / "log.txt").read_text()
    assert re.search(rf"epoch {last} done: loss [\d.]+ lr [\d.e+-]+ images/s [\d.]+", log)
    assert f"epoch {last} eval: nme" in log and (work / "tb").is_dir()


def _command(root: Path, work: Path, *extra: str) -> list[str]:
    return ["--wflw-root", str(root), "--work-dir", str(work), "--input-size", "32", "--workers", "0",
            "--batch-size", "16", "--lr", "1e-3", "--warmup-iters", "4", "--pretrained", "none",
            "--print-freq", "1", "--eval-interval", "1", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def test_kill_mid_epoch_and_resume_exactly(synthetic_root, tmp_path):
    """Kill a run in epoch 1, resume it: same lr position, and the same weights as an unbroken run."""
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", *_command(synthetic_root, work, "--epochs", "2")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = work / "log.txt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and "epoch 1 step 1/2" in log.read_text():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert torch.load(work / "checkpoint.pth", weights_only=True)["epoch"] == 0
    # every run in a subprocess with one thread, so that floating-point sums run in the same order
    subprocess.run(cmd + ["--resume"], cwd=REPO, env=_env(), check=True, capture_output=True)
    text = log.read_text()
    assert "at epoch 1, iteration 2," in text
    first_step = text.split("resumed from")[1].split("epoch 1 step 1/2 ")[1].splitlines()[0]
    lr = float(re.search(r"lr ([\d.e+-]+)", first_step).group(1))
    cfg = resolve_config(parse_args(_command(synthetic_root, work)))
    assert lr == pytest.approx(cfg.lr * lr_factor(3, 2, cfg))  # the lr set after step 3
    resumed = torch.load(work / "checkpoint.pth", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["iteration"] == 4

    subprocess.run([sys.executable, "-m", "training.train",
                    *_command(synthetic_root, tmp_path / "straight", "--epochs", "2")],
                   cwd=REPO, env=_env(), check=True, capture_output=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pth", weights_only=True)
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)


def test_two_processes_torchrun(synthetic_root, tmp_path):
    """gloo on CPU, total batch 8 split as 2 processes x 2 accumulated micro-batches of 2."""
    work = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", *_command(synthetic_root, work, "--epochs", "1", "--batch-size", "8",
                                            "--max-images-per-step", "2")]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (work / "log.txt").read_text()
    # 32 faces, total batch 8: 4 steps per epoch, as one process with batch 8 takes
    assert "processes 2, per-process batch 4 = 2 x 2" in log and "4 steps per epoch" in log
    assert len(re.findall(r"^epoch 0 step \d/4", log, re.M)) == 4
    assert log.count("saved ") == 1 and (work / "checkpoint.pth").is_file()
    saved = torch.load(work / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    loaded = load_regressor(work / "checkpoint.pth").state_dict()
    for key in ("fc.weight", "fc.bias", "bn1.running_mean", "layer4.2.bn3.weight"):
        torch.testing.assert_close(loaded[key], saved[key], rtol=0, atol=0, msg=key)
