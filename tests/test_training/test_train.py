from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.network import LandmarkRegressor, load_regressor
from training.recipes import RECIPES, warmup_factor
from training.prepare import IMAGES_GDRIVE_ID, open_wflw_root
from training.train import TrainConfig, _build_model, lr_factor, main, parse_args, resolve_config
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


def test_test_nme_falls(learning_run):
    """The test NME falls from the head's start. This short run does not prove the model reads
    faces: it ends above the mean shape's NME (docs/learning-proof.md); the slow test below does."""
    run = learning_run
    assert run["after"] < run["before"]


@pytest.mark.slow
def test_learns_faces_beyond_the_mean_shape(learning_root, long_learning, tmp_path):
    """640 steps from random weights with the default recipe (mmpose-0.x: its augmentation, head
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


def test_shared_flags(capsys):
    """--device and --no-flip are the shared vocabulary (model.cli); a bad device exits 2 at parse time."""
    with pytest.raises(SystemExit) as refused:
        parse_args(["--wflw-root", "d", "--device", "gpu"])
    assert refused.value.code == 2 and "auto|cpu|cuda|cuda:N" in capsys.readouterr().err
    cfg = parse_args(["--wflw-root", "d", "--device", "cuda:1", "--no-flip", "--compile", "--gpu-data",
                      "--no-channels-last"])
    assert cfg.device == "cuda:1" and not cfg.flip_test and cfg.compile and cfg.gpu_data and cfg.channels_last is False
    cfg = parse_args(["--wflw-root", "d"])
    assert cfg.device == "auto" and cfg.flip_test and cfg.channels_last is None and not cfg.compile
    with pytest.raises(ValueError, match="--device: invalid device 'tpu'"):
        main(TrainConfig(wflw_root="d", device="tpu"))


def test_checkpoint_stores_the_flip_convention_best_pth_was_chosen_by(learning_run):
    """best.pth is kept by the NME under the recipe's flip convention, and says which one."""
    cfg = learning_run["cfg"]
    config = torch.load(Path(cfg.work_dir) / "best.pth", map_location="cpu", weights_only=True)["config"]
    assert config["flip_convention"] == RECIPES[cfg.recipe].flip_convention == "0.x"
    assert config["flip_test"] is True


def test_fine_tune_from_a_project_checkpoint(learning_run, synthetic_root, tmp_path, tiny_config):
    """--pretrained PATH starts from the file, head included, and fine-tunes: the loss is finite and
    after 4 Adam steps of lr 1e-4 every weight is within a few lr of the file's."""
    pretrained = Path(learning_run["cfg"].work_dir) / "best.pth"
    cfg = tiny_config(synthetic_root, tmp_path, pretrained=str(pretrained), epochs=1, input_size=32, lr=1e-4,
                      warmup_iters=1)
    file_state = load_regressor(pretrained).state_dict()
    start = _build_model(cfg).state_dict()
    for key, value in file_state.items():
        torch.testing.assert_close(start[key], value, rtol=0, atol=0, msg=key)
    result = main(cfg)
    loss = float(re.search(r"epoch 0 done: loss ([\d.]+)", (tmp_path / "log.txt").read_text()).group(1))
    assert math.isfinite(loss) and math.isfinite(result["last"]["nme"])
    tuned = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    for key in ("conv1.weight", "layer4.2.conv3.weight", "fc.weight", "fc.bias"):
        change = (tuned[key] - file_state[key]).abs().max().item()
        assert 0 < change < 10 * result["steps_per_epoch"] * cfg.lr, key


def _help_blocks(text: str) -> dict[str, str]:
    """Each flag's help paragraph of an argparse --help text, keyed by its first option string."""
    blocks, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current is not None and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_help_states_every_default_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per flag: no default cut by the wrapping
    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    blocks = _help_blocks(capsys.readouterr().out)
    flags = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)} - {"--flip-test"}
    assert flags | {"--no-flip", "--device"} <= set(blocks) and len(blocks) > 25
    for flag, block in blocks.items():
        if flag == "-h":
            continue
        assert block.count("(default") + block.count("(required)") == 1, block
        assert "(default: )" not in block and "(default: None)" not in block, block
    assert blocks["--wflw-root"].endswith("(required)")
    assert blocks["--warmup-iters"].endswith("(default: the recipe's, 500)")
    assert blocks["--warmup-ratio"].endswith("(default: the recipe's, 0.001)")
    assert blocks["--eval-interval"].endswith("(default: the recipe's: 1 for mmpose-0.x, 10 for mmpose-1.x)")
    assert blocks["--flip-convention"].endswith("(default: the recipe's: 0.x for mmpose-0.x, 1.x for mmpose-1.x)")
    assert blocks["--channels-last"].endswith("(default: on with CUDA, off on CPU)")
    assert blocks["--amp"].endswith("(default: off)") and blocks["--no-flip"].endswith("(default: off)")
    assert blocks["--milestones"].endswith("(default: 170 200)") and blocks["--lr"].endswith("(default: 0.0005)")
    assert blocks["--device"].endswith("(default: auto)") and blocks["--epochs"].endswith("(default: 210)")


def test_a_folder_that_is_not_a_wflw_root_is_one_line(synthetic_root, tmp_path):
    """An unpacked annotation archive without WFLW_images/: exit status 2, one line naming the folder,
    what is missing and how to get it, and nothing written."""
    root = tmp_path / "annotations-only"
    shutil.copytree(synthetic_root / "WFLW_annotations", root / "WFLW_annotations")
    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, "-m", "training.train", "--wflw-root", str(root), "--work-dir", str(work)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"python -m training.train: error: --wflw-root {root}: not a WFLW root, "
                           "missing WFLW_images/; WFLW_images/ comes from WFLW_images.tar.gz on Google Drive")
    assert f"gdown {IMAGES_GDRIVE_ID}" in line and line.endswith(f"--out {root}")
    assert not work.exists()
    # the annotation folder itself given as the root: the message points one folder up
    with pytest.raises(FileNotFoundError, match=rf"so it is the WFLW_annotations folder: give the folder above it "
                                                rf"\({re.escape(str(root))}\);.* --out {re.escape(str(root))}$"):
        open_wflw_root(root / "WFLW_annotations")
    with pytest.raises(FileNotFoundError, match=rf"--wflw-root {re.escape(str(tmp_path / 'nowhere'))}: no such folder"):
        open_wflw_root(tmp_path / "nowhere")
    assert open_wflw_root(synthetic_root).root == synthetic_root
