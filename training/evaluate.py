"""Evaluate a checkpoint on the WFLW test set the way the papers report it.

    python -m training.evaluate --wflw-root ROOT --weights CKPT --out DIR [--box landmarks|rect|detector] [--no-flip]

Faces are cropped from the full images through ``model.pipeline.Predictor.predict_boxes`` (the
inference path of the app, one image's faces in one batch) and scored in image pixels. Writes
``metrics.json``, ``predictions.json`` and ``ced.png`` to ``--out`` and prints the WFLW table (full
set and the six attribute subsets).

Boxes: ``landmarks`` = the ground-truth landmarks' extent (how mmpose built its boxes; reproduces
NME 4.44), ``rect`` = the WFLW detection rectangle, ``detector`` = the MTCNN box that overlaps the
rectangle most (faces it misses fall back to the rectangle and are counted).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from model.constants import INPUT_SIZE
from model.image import read_image
from model.network import load_regressor, read_checkpoint
from model.pipeline import Predictor
from model.layout import ATTRIBUTES
from training.metrics import ced_figure, format_table, nme, subset_table
from model.geometry import match_boxes
from training.wflw import attribute_matrix, crop_box, find_wflw_root, load_wflw_txt, resolve_image

BOX_CHOICES = ("landmarks", "rect", "detector")
DETECTOR_MIN_IOU = 0.3  # a detection counts as the annotated face above this overlap


def _checkpoint_input_size(path: Path) -> int:
    ckpt = read_checkpoint(path)
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    return int(config.get("input_size", INPUT_SIZE)) if isinstance(config, dict) else INPUT_SIZE


def run(wflw_root, weights, out, box: str = "landmarks", flip_test: bool = True, device=None) -> dict:
    """Evaluate and write the three files; returns the metrics dict written to metrics.json."""
    if box not in BOX_CHOICES:
        raise RuntimeError(f"--box {box!r} is not supported: use one of {BOX_CHOICES}")
    tree = find_wflw_root(wflw_root)
    samples = load_wflw_txt(tree.annotations("test"))
    if not samples:
        raise ValueError(f"{tree.annotations('test')}: no test faces")
    weights = Path(weights)
    input_size = _checkpoint_input_size(weights)
    # eager torch fp32: exact at any input size (ONNX graphs are fixed at 256, int8 moves NME)
    predictor = Predictor(weights=load_regressor(weights), device=device, flip_test=flip_test, backend="torch",
                          input_size=input_size)

    by_image: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_image[s.image].append(i)
    pred = np.zeros((len(samples), *samples[0].landmarks.shape), dtype=np.float32)
    missed = 0
    for name, indices in by_image.items():
        image = read_image(resolve_image(tree.images, name), name=name)
        if box == "detector":
            detected = predictor.detect(image).boxes
            rects = [np.asarray(samples[i].box, dtype=np.float64) for i in indices]
            # each annotated face takes the detection overlapping its WFLW rectangle most
            pairs = match_boxes(rects, detected, DETECTOR_MIN_IOU)
            boxes = [rect if j is None else detected[j] for rect, j in zip(rects, pairs)]
            missed += sum(j is None for j in pairs)
        else:
            boxes = [crop_box(samples[i], box) for i in indices]
        pred[indices] = predictor.predict_boxes(image, np.asarray(boxes, dtype=np.float64))

    gt = np.stack([s.landmarks for s in samples])
    per_image = nme(pred, gt)
    table = subset_table(per_image, attribute_matrix(samples))
    as_percent = lambda s: {"nme": 100 * s["nme"], "fr@0.1": 100 * s["fr"], "auc@0.1": s["auc"],  # noqa: E731
                            "num_faces": s["num_faces"]}
    metrics = {**as_percent(table["full"]), "box": box, "flip_test": flip_test, "weights": str(weights),
               "subsets": {name: as_percent(table[name]) for name in ATTRIBUTES}}
    if box == "detector":
        metrics["detector_missed"] = missed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    records = [{
        "image": s.image, "index": i, "nme": float(per_image[i]),
        "pred": np.round(pred[i], 3).tolist(), "gt": np.round(s.landmarks, 3).tolist(),
        "attributes": None if s.attributes is None else dict(zip(ATTRIBUTES, s.attributes)),
    } for i, s in enumerate(samples)]
    (out / "predictions.json").write_text(json.dumps(records), encoding="utf-8")
    ced_figure({f"{weights.name} ({box} boxes)": per_image}).savefig(out / "ced.png")
    print(format_table(table))
    print(f"box: {box}, flip test: {'on' if flip_test else 'off'}, faces: {len(samples)}"
          + (f", detector missed {missed} (rectangle used)" if box == "detector" else ""))
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the WFLW test set.")
    parser.add_argument("--wflw-root", required=True, help="WFLW root (WFLW_images/, WFLW_annotations/)")
    parser.add_argument("--weights", required=True, help="checkpoint (training or mmpose file)")
    parser.add_argument("--out", required=True, help="folder for metrics.json, predictions.json, ced.png")
    parser.add_argument("--box", default="landmarks", choices=BOX_CHOICES,
                        help="crop box: landmarks' extent (published), WFLW rectangle, or MTCNN")
    parser.add_argument("--no-flip", action="store_true", help="turn off test-time flip")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when present)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run(args.wflw_root, args.weights, args.out, args.box, not args.no_flip, args.device)
    sys.exit(0)
