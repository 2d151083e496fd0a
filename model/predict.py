"""Command line: 98-point landmarks for image files (the work is ``model.pipeline.Predictor``).

    python -m model.predict IMAGE_OR_FOLDER... [--json OUT] [--out-image OUT] [--labels]
                            [--scheme 98|68] [--weights W] [--device auto|cpu|cuda|cuda:N] [--no-flip] [--max-faces N]

With one image file, ``--json`` and ``--out-image`` name files (unless they name an existing
folder). With several inputs, or a folder, they name folders that receive ``<stem>.json`` /
``<stem>.png``; inputs that share a stem keep their path relative to the inputs' common folder
(``dA/x.png dB/x.png --json out`` writes ``out/dA/x.json`` and ``out/dB/x.json``) and inputs that
differ only by suffix keep it (``a.png a.jpg`` -> ``a.png.json``, ``a.jpg.json``); see
``model.cli.output_names``. No output is written twice in one run: a clash is an error for the
later input. Each record's ``"image"`` is the input path as given. Faces are in reading order
(rows top to bottom, left to right), as in the app. A bad image is reported and skipped; the exit
status is 1 when any input failed, 2 when the model cannot be loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from model.cli import BatchOutputs, add_model_arguments
from model.draw import draw_faces
from model.text import counted
from model.image import ImageError, find_images, read_image
from model.io import atomic_write_bytes, atomic_write_text
from model.layout import NUM_LANDMARKS, SCHEMES
from model.pipeline import Predictor, max_faces_note, to_record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path,
                        help="image files (JPEG, PNG, PPM, WebP, BMP, ...) or folders (every image under them)")
    parser.add_argument("--json", type=Path, default=None, dest="json_out",
                        help="write results as JSON (a file for one image, a folder for several)")
    parser.add_argument("--out-image", type=Path, default=None,
                        help="write the annotated image (a file for one image, a folder for several)")
    parser.add_argument("--labels", action="store_true", help="write landmark indices on the annotated image")
    parser.add_argument("--scheme", type=int, choices=SCHEMES, default=NUM_LANDMARKS,
                        help="points in the JSON: 98 (WFLW) or 68 (the 300W / iBUG subset, for dlib and "
                             "face-alignment users; the record gains \"scheme\": 68) (default: 98)")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Encode ``image_rgb`` by ``path``'s suffix (.png, .jpg, ...) and write it atomically."""
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"{path}: cannot write an image of type {path.suffix!r} (use .png or .jpg)")
    atomic_write_bytes(path, encoded.tobytes())


def process(predictor: Predictor, image_path: Path, image: np.ndarray, outputs: BatchOutputs,
            args: argparse.Namespace) -> None:
    """Landmarks for one decoded image, reported on the terminal and written where asked."""
    detections = predictor.detect(image)
    faces = predictor.faces_from_detections(image, detections)
    warning = max_faces_note(len(detections), len(faces))
    if warning is not None:
        print(f"{image_path}: {warning}", file=sys.stderr)
    elif not faces:
        print(f"{image_path}: no face found", file=sys.stderr)
    else:
        print(f"{image_path}: {counted(len(faces), 'face')}")
    if (path := outputs.path(args.json_out, image_path, ".json")) is not None:
        record = to_record(str(image_path), image.shape, faces, warning=warning, scheme=args.scheme)
        atomic_write_text(path, json.dumps(record, indent=1))
    if (path := outputs.path(args.out_image, image_path, ".png")) is not None:
        write_image(path, draw_faces(image, faces, labels=args.labels, numbers=list(range(1, len(faces) + 1))))


def _load_predictor(args: argparse.Namespace) -> Predictor:
    return Predictor(weights=args.weights, device=args.device, flip_test=not args.no_flip, max_faces=args.max_faces,
                     backend=args.backend)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = find_images(args.images)
    if not images:
        print(f"error: no image files in {', '.join(map(str, args.images))}", file=sys.stderr)
        return 1
    folder_out = any(o is not None and o.is_dir() for o in (args.json_out, args.out_image))
    outputs = BatchOutputs(images, several=len(images) > 1 or any(p.is_dir() for p in args.images) or folder_out)
    predictor, failed, unwritten = None, 0, 0
    for image_path in images:
        try:
            image = read_image(image_path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if predictor is None:  # loaded once a first input is known good: a bad file is named first
            try:
                predictor = _load_predictor(args)
            except (OSError, ValueError) as exc:  # missing/unreadable weights, offline, absent GPU, bad option
                print(f"error: {exc}", file=sys.stderr)
                return 2
        try:
            process(predictor, image_path, image, outputs, args)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            unwritten += 1
    if failed:
        print(f"{failed} of {counted(len(images), 'image')} could not be read", file=sys.stderr)
    if unwritten:
        print(f"{unwritten} of {counted(len(images), 'result')} could not be written", file=sys.stderr)
    return 1 if failed or unwritten else 0


if __name__ == "__main__":
    sys.exit(main())
