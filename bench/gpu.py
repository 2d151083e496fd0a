"""The GPU benchmark: ``python -m bench.gpu`` measures the GPU figures in one run and prints one table.

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
import sys
from pathlib import Path

import torch

from bench.common import default_photos
from bench.upload_profile import format_upload_profile, profile_upload
from model.cli import device_arg
from model.pipeline import Predictor, pick_device

NO_CUDA_MESSAGE = ("bench.gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured. "
                   "`python -m bench.gpu --profile-upload` profiles an upload on the CPU.")


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
