"""The rows of ``python -m bench.gpu`` that need a CUDA GPU (see ``bench.gpu`` for what each measures).

Each row is measured in the same run and printed beside a reference figure measured earlier on one
H200 (``REFERENCE``). A row that fails prints its error instead of a number; the other rows still run.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.common import rate, timed
from bench.detection import gpu_figure as detection_gpu_figure
from bench.gpu_eval import resident_rates
from bench.scenes import video_throughput
from bench.upload_profile import profile_upload
from model.constants import INPUT_SIZE
from model.image import read_image
from model.network import load_regressor
from model.pipeline import Predictor

TRAIN_BATCH = 512           # the published total batch (64 x 8 GPUs)
GHOST_GROUP = 64            # BatchNorm statistics over 64-image groups, as on each published GPU
CEILING_STEPS, WARMUP_STEPS = 10, 3
LOOP_EPOCHS = 3             # the last epoch's images/s is reported (the first compiles and warms up)
LOOP_FACES = 2560           # training faces per epoch: the bench's synthetic faces, repeated
EVAL_FACES = 4096           # faces per evaluation figure (the synthetic test faces, repeated)
EVAL_BATCH = 512
EVAL_ITERS = 20

# Figures measured on one H200 (2026-11), for the column beside ours.
REFERENCE = {
    "ceiling": "2,784 ghost / 3,751 plain img/s (eager bf16); 4,393 compiled plain",
    "loop": "800-885 img/s (ghost, eager, --amp)",
    "eval": "one image's faces per forward",
    "eval_ceiling": "5,824 faces/s (bench.gpu_eval); compiled forward 18,289 crops/s",
    "upload": "95 ms fp32, 51 ms bf16 (median, 7 photos)",
    "video": "54 frames/s",
    "deviation": "max 0.015 px (fp32, TF32)",
}


# ----------------------------------------------------------------------------- training


def _train_config(root: Path, work: Path, ghost: bool, compiled: bool, **extra):
    from training.train import TrainConfig

    return TrainConfig(wflw_root=str(root), work_dir=str(work), pretrained="none", amp=True, compile=compiled,
                       bn_group=GHOST_GROUP if ghost else 0, batch_size=TRAIN_BATCH, **extra)


def ceiling_rate(ghost: bool, compiled: bool) -> float:
    """Images/s of ``training.train``'s own step (model, compile, fused Adam, channels-last as its
    ``training_objects`` builds them) on one resident batch of 512 uint8 crops."""
    from training.loss import SoftWingLoss
    from training.train import train_step, training_objects, resolve_config

    device = torch.device("cuda")
    cfg = resolve_config(_train_config(Path("."), Path("."), ghost, compiled))
    _, net, optimizer, scheduler = training_objects(cfg, device, 1, 1000, True)
    net.train()
    g = torch.Generator(device=device).manual_seed(0)
    batch = {"image": torch.randint(0, 256, (TRAIN_BATCH, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8,
                                    device=device, generator=g),
             "target": torch.rand((TRAIN_BATCH, 98, 2), device=device, generator=g),
             "weight": torch.ones((TRAIN_BATCH, 98), device=device),
             "index": torch.arange(TRAIN_BATCH)}
    criterion = SoftWingLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        train_step(net, criterion, itertools.repeat(batch), TRAIN_BATCH, device, True, True)
        optimizer.step()
        scheduler.step()

    return rate(step, TRAIN_BATCH, CEILING_STEPS, WARMUP_STEPS)


def repeated_tree(root: Path, out: Path, faces: int) -> Path:
    """A WFLW tree whose training list repeats ``root``'s faces up to ``faces`` lines (images linked)."""
    from model.formats.wflw import find_wflw_root

    tree = find_wflw_root(root)
    shutil.copytree(tree.root, out, symlinks=True, ignore=lambda d, names: ["WFLW_images"] if d == str(tree.root) else [])
    (out / "WFLW_images").symlink_to(tree.images.resolve())
    lines = tree.annotations("train").read_text().splitlines()
    repeated = list(itertools.islice(itertools.cycle(lines), faces))
    (find_wflw_root(out).annotations("train")).write_text("\n".join(repeated) + "\n")
    return out


def loop_rate(root: Path, ghost: bool, compiled: bool, workers: int) -> float:
    """Images/s of the last epoch of ``training.train.main`` (loader, augmentation, step), read from its log."""
    from training.train import LOG_NAME, main

    with tempfile.TemporaryDirectory() as work:
        cfg = _train_config(root, Path(work), ghost, compiled, epochs=LOOP_EPOCHS, eval_interval=LOOP_EPOCHS,
                            workers=workers, print_freq=1000)
        main(cfg)
        log = (Path(work) / LOG_NAME).read_text()
    found = re.findall(rf"epoch {LOOP_EPOCHS - 1} done: .*?images/s ([0-9.]+)", log)
    if not found:
        raise RuntimeError(f"no 'epoch {LOOP_EPOCHS - 1} done: ... images/s' line in the training log")
    return float(found[-1])


def training_rows(workers: int) -> list[tuple[str, str, str]]:
    from bench.checkpoint import synthetic_root

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = repeated_tree(synthetic_root(), Path(tmp) / "wflw", LOOP_FACES)
        for ghost, compiled in ((True, False), (False, False), (True, True), (False, True)):
            name = f"{'ghost BN 64' if ghost else 'plain BN'}, {'compiled' if compiled else 'eager'}"
            ceiling = _row(f"train step, data-resident, {name}", lambda: f"{ceiling_rate(ghost, compiled):,.0f} img/s",
                           REFERENCE["ceiling"])
            loop = _row(f"train loop (training.train), {name}",
                        lambda: f"{loop_rate(root, ghost, compiled, workers):,.0f} img/s", REFERENCE["loop"])
            rows += [ceiling, loop]
    return rows


# ----------------------------------------------------------------------------- evaluation


def _eval_faces(count: int):
    """(samples, images_dir): the bench's synthetic test faces repeated to ``count`` rows."""
    from bench.checkpoint import synthetic_root
    from model.formats.wflw import find_wflw_root, load_test_split

    tree = find_wflw_root(synthetic_root())
    samples, _ = load_test_split(tree)
    return list(itertools.islice(itertools.cycle(samples), count)), tree.images


def evaluation_rate(weights: Path, precision: str) -> float:
    """Faces/s of ``training.evaluate.predict_samples`` (flip test, GPU crops, batch 512)."""
    from training.evaluate import predict_samples

    samples, images_dir = _eval_faces(EVAL_FACES)
    predictor = Predictor(weights, device="cuda", backend="torch", precision=precision)
    predict_samples(predictor, samples[:EVAL_BATCH], images_dir, batch_size=EVAL_BATCH)  # warm-up
    _, ms = timed(lambda: predict_samples(predictor, samples, images_dir, batch_size=EVAL_BATCH), "cuda")
    return len(samples) / (ms / 1000.0)


def evaluation_ceiling(weights: Path, compiled: bool) -> float:
    """Faces/s of GPU crops + network (flip test, bf16, channels-last) on images already on the GPU."""
    return resident_rates(load_regressor(weights), EVAL_BATCH, EVAL_ITERS, compiled=compiled)["both"]


# ----------------------------------------------------------------------------- upload, video, deviation


def upload_figure(weights: Path, photos: list[Path]) -> str:
    rows = profile_upload(Predictor(weights, device="cuda", backend="torch"), photos, repeats=5)
    stages = {k: statistics.median(r[k] for r in rows) for k in ("decode", "P-net", "R-net", "O-net",
                                                                  "MTCNN rest", "crops", "network", "draw")}
    top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:3])
    return f"{statistics.median(r['predict'] for r in rows):.1f} ms median ({len(rows)} photos; {top})"


def video_figure(weights: Path) -> str:
    result = video_throughput(Predictor(weights, device="cuda", backend="torch", flip_test=False))
    return f"{result['fps']:.1f} frames/s ({result['frames']} frames, 1280x720, flip off)"


def deviation_figure(weights: Path, photos: list[Path]) -> str:
    """Point distance between CUDA fp32 (TF32 allowed, as by default) and CPU fp32 on the same boxes."""
    cpu = Predictor(weights, device="cpu", backend="torch")
    gpu = Predictor(weights, device="cuda", backend="torch")
    distances = []
    for path in photos:
        image = read_image(path)
        boxes = cpu.detect(image).boxes
        if len(boxes):
            distances.append(np.linalg.norm(gpu.predict_boxes(image, boxes) - cpu.predict_boxes(image, boxes), axis=-1))
    d = np.concatenate([x.reshape(-1) for x in distances])
    return f"max {d.max():.4f} px, mean {d.mean():.4f} px ({len(d) // 98} faces)"


# ----------------------------------------------------------------------------- the table


def _row(what: str, measure: Callable[[], str], before: str) -> tuple[str, str, str]:
    start = time.perf_counter()
    try:
        value = measure()
    except Exception as exc:  # a bench row that fails says why; the others still run
        traceback.print_exc()
        value = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    print(f"  [{time.perf_counter() - start:5.1f} s] {what}: {value}", flush=True)
    return what, value, before


def run_table(args, photos: list[Path]) -> int:
    """Measure every row on CUDA and print the table; returns the exit status (0)."""
    from bench.checkpoint import bench_checkpoint

    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    weights = Path(args.weights) if args.weights else bench_checkpoint()
    workers = max(1, min(15, len(os.sched_getaffinity(0)) - 1))  # loader workers: the cores but one, at most 15
    rows = [] if args.skip_training else training_rows(workers)
    rows += [
        _row("evaluation, predict_samples, fp32, flip", lambda: f"{evaluation_rate(weights, 'fp32'):,.0f} faces/s",
             REFERENCE["eval"]),
        _row("evaluation, predict_samples, bf16, flip", lambda: f"{evaluation_rate(weights, 'bf16'):,.0f} faces/s",
             REFERENCE["eval"]),
        _row("evaluation ceiling, resident, bf16, eager", lambda: f"{evaluation_ceiling(weights, False):,.0f} faces/s",
             REFERENCE["eval_ceiling"]),
        _row("evaluation ceiling, resident, bf16, compiled",
             lambda: f"{evaluation_ceiling(weights, True):,.0f} faces/s", REFERENCE["eval_ceiling"]),
        _row("upload, Predictor.predict + draw, fp32", lambda: upload_figure(weights, photos), REFERENCE["upload"]),
        _row("video, model.video 720p", lambda: video_figure(weights), REFERENCE["video"]),
        _row("CUDA fp32 vs CPU, same boxes", lambda: deviation_figure(weights, photos), REFERENCE["deviation"]),
        _row("detection, facenet-pytorch -> FaceDetector", detection_gpu_figure, "not measured"),
    ]
    device = torch.cuda.get_device_name()
    print(f"\npython -m bench.gpu on {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"{time.perf_counter() - start:.0f} s")
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | measured | reference (H200, 2026-11) |")
    print(f"| {'-' * width} | --- | --- |")
    for what, value, before in rows:
        print(f"| {what.ljust(width)} | {value} | {before} |")
    return 0
