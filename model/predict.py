"""Command line: 98-point landmarks for image files.

    python -m model.predict IMAGE... [--weights W] [--json OUT] [--out-image OUT] [--no-flip]

With one image, ``--json`` and ``--out-image`` name files; with several they name folders that
receive ``<image stem>.json`` / ``<image stem>.png`` (both written atomically). A bad image is
reported and skipped; the exit status is non-zero when any image failed. A project checkpoint's
``config.input_size`` sets the crop size (through ``Predictor``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from model.backends import add_backend_argument
from model.draw import draw_faces
from model.image import ImageError, read_image
from model.io import atomic_write_bytes, atomic_write_text
from model.pipeline import MAX_FACES, Predictor, to_record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, PPM, WebP, BMP, ...)")
    parser.add_argument("--weights", default=None,
                        help="checkpoint path or URL (default: the official mmpose weights, cached in the torch hub dir)")
    parser.add_argument("--json", type=Path, default=None, dest="json_out",
                        help="write results as JSON (a file for one image, a folder for several)")
    parser.add_argument("--out-image", type=Path, default=None,
                        help="write the annotated image (a file for one image, a folder for several)")
    parser.add_argument("--no-flip", action="store_true", help="disable test-time flip (faster, slightly less accurate)")
    parser.add_argument("--labels", action="store_true", help="write landmark indices on the annotated image")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    add_backend_argument(parser)
    parser.add_argument("--max-faces", type=int, default=MAX_FACES, help=f"most faces per image (default: {MAX_FACES})")
    return parser.parse_args(argv)


def _output_path(option: Path | None, image: Path, several: bool, suffix: str) -> Path | None:
    if option is None:
        return None
    path = option / f"{image.stem}{suffix}" if several else option
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Encode ``image_rgb`` by ``path``'s suffix (.png, .jpg, ...) and write it atomically."""
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"{path}: cannot write an image of type {path.suffix!r} (use .png or .jpg)")
    atomic_write_bytes(path, encoded.tobytes())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        predictor = Predictor(weights=args.weights, device=args.device, flip_test=not args.no_flip,
                              max_faces=args.max_faces, backend=args.backend)
    except (OSError, ValueError) as exc:  # missing/unreadable weights, offline, bad device or option
        print(f"error: {exc}", file=sys.stderr)
        return 2
    several = len(args.images) > 1
    failed = unwritten = 0
    for image_path in args.images:
        try:
            image = read_image(image_path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        detections = predictor.detect(image)
        faces = predictor.faces_from_detections(image, detections)
        warning = None
        if not faces:
            print(f"{image_path}: no face found", file=sys.stderr)
        elif len(detections) > len(faces):
            warning = (f"{len(detections)} faces found, landmarks for the {len(faces)} most confident "
                       f"(--max-faces)")
            print(f"{image_path}: {warning}", file=sys.stderr)
        else:
            print(f"{image_path}: {len(faces)} face(s)")
        record = to_record(image_path.name, image.shape, faces, warning=warning)
        try:
            if (path := _output_path(args.json_out, image_path, several, ".json")) is not None:
                atomic_write_text(path, json.dumps(record, indent=1))
            if (path := _output_path(args.out_image, image_path, several, ".png")) is not None:
                write_image(path, draw_faces(image, faces, labels=args.labels))
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            unwritten += 1
    if failed:
        print(f"{failed} of {len(args.images)} image(s) could not be read", file=sys.stderr)
    if unwritten:
        print(f"{unwritten} of {len(args.images)} result(s) could not be written", file=sys.stderr)
    return 1 if failed or unwritten else 0


if __name__ == "__main__":
    sys.exit(main())
