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

from model.layout import NUM_LANDMARKS
from model.network import LandmarkRegressor, load_regressor
from tests.test_training.conftest import LONG_LEARNING_SETTINGS, run_learning
from training.train import HEAD_INIT_BIAS, HEAD_INIT_STD, TrainConfig, _build_model, lr_factor, main, parse_args


REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_published_recipe():
    cfg = parse_args(["--wflw-root", "data"])
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup_iters, cfg.warmup_ratio) == (210, 512, 5e-4, 500, 0.001)
    assert (cfg.milestones, cfg.gamma, cfg.eval_interval, cfg.input_size) == ([170, 200], 0.1, 10, 256)
    assert cfg.pretrained == "imagenet" and cfg.flip_test and not cfg.resume and not cfg.amp
    cfg = parse_args(["--wflw-root", "d", "--milestones", "3", "4", "--no-flip-test", "--resume", "--amp"])
    assert cfg.milestones == [3, 4] and not cfg.flip_test and cfg.resume and cfg.amp


def test_lr_schedule():
    cfg = TrainConfig(wflw_root="x")
    steps = 15  # 7,500 faces / 512
    assert lr_factor(0, steps, cfg) == pytest.approx(0.001)
    assert lr_factor(250, steps, cfg) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(500, steps, cfg) == 1.0
    assert lr_factor(170 * steps - 1, steps, cfg) == 1.0
    assert lr_factor(170 * steps, steps, cfg) == pytest.approx(0.1)
    assert lr_factor(200 * steps, steps, cfg) == pytest.approx(0.01)


def test_bad_settings(tmp_path, synthetic_root, tiny_config):
    with pytest.raises(ValueError, match="per-process batch 8 must be a multiple of max_images_per_step 3"):
        main(tiny_config(synthetic_root, tmp_path, max_images_per_step=3))
    with pytest.raises(RuntimeError, match="'resnet' is not supported"):
        main(tiny_config(synthetic_root, tmp_path, pretrained="resnet"))


def test_new_head_starts_at_the_crop_centre(random_checkpoint):
    torch.manual_seed(0)
    model = _build_model(TrainConfig(wflw_root="x", pretrained="none"))
    torch.testing.assert_close(model.fc.bias, torch.full_like(model.fc.bias, HEAD_INIT_BIAS))
    assert abs(model.fc.weight.std().item() - HEAD_INIT_STD) < 0.1 * HEAD_INIT_STD
    with torch.no_grad():
        out = model.train()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, NUM_LANDMARKS, 2) and (out - HEAD_INIT_BIAS).abs().mean() < 0.1
    # a checkpoint keeps its own head
    loaded = _build_model(TrainConfig(wflw_root="x", pretrained=str(random_checkpoint)))
    torch.testing.assert_close(loaded.fc.bias, load_regressor(random_checkpoint).fc.bias)


def test_test_nme_falls(learning_run):
    """The test NME falls from the crop-centre start. This short run does not prove the model reads
    faces: it ends near the mean shape's NME (docs/learning-proof.md); the slow test below does."""
    run = learning_run
    assert run["after"] < run["before"]


@pytest.mark.slow
def test_learns_faces_beyond_the_mean_shape(learning_root, tmp_path):
    """320 steps from random weights with the recipe's augmentation: the best checkpoint (the one
    the recipe keeps) must beat always predicting the training set's mean face on held-out faces,
    i.e. the model reads pose and shape, not just the average face."""
    run = run_learning(learning_root, tmp_path / "long", **LONG_LEARNING_SETTINGS)
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
    cfg = parse_args(_command(synthetic_root, work))
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
    assert load_regressor(work / "checkpoint.pth") is not None


def test_every_torch_load_is_weights_only():
    for path in list((REPO / "training").rglob("*.py")) + list((REPO / "model").rglob("*.py")):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"
