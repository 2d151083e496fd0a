"""Evaluate a checkpoint on one split of a WFLW root the way the papers report it.

    python -m training.evaluate --wflw-root ROOT --weights CKPT --out DIR [--split test|train|all]
        [--box landmarks|rect|detector] [--no-flip] [--flip-convention auto|1.x|0.x] [--bf16]
        [--device auto|cpu|cuda|cuda:N] [--batch-size 128]

Splits: ``test`` (default) is the test list: WFLW's 2,500 test faces, or the photos
``model.annotate`` held out (``--val-fraction``) of a dataset of your own photos; ``train`` the train
list; ``all`` both, test faces first (the order the app's browser holds an own-photo dataset in).
The split is named in the printed table, metrics.json and predictions.json, and a predictions file
is only read back for the split it was made for.

Faces are cropped from the full images (the crops of ``Predictor.predict_boxes``: ``cv2.warpAffine``
on CPU, ``model.geometry.gpu_crops`` on the GPU, where the images are uploaded once and the crops stay),
gathered across images into forward passes of ``--batch-size`` faces, and scored in image pixels. Writes
``metrics.json``, ``predictions.json`` (schema: ``write_predictions``) and ``ced.png`` to ``--out``
and prints the WFLW table (full set and the six attribute subsets).

Boxes: ``landmarks`` = mmpose's test boxes, rebuilt from the ground-truth landmarks
(``model.formats.wflw.mmpose_box``; how the published 4.44 was measured), ``rect`` = the WFLW detection
rectangle, ``detector`` = the MTCNN box that overlaps the rectangle most (faces it misses fall back
to the rectangle and are counted).

Precision: fp32 on every device (as mmpose evaluates). ``--bf16`` runs the network under bf16
autocast instead, and also in fp32 to report how far bf16 moved the points (mean and max px).
Flip test: ``--flip-convention 1.x`` (x -> 1 - x - 1/size, mmpose 1.x's table, 4.44) or ``0.x``
(x -> 1 - x, the 0.x table that published the file, 4.41); see ``model.codec``. The default,
``auto``, is the convention a training checkpoint stores (its recipe's, the one that picked
``best.pth``), else 1.x (the mmpose files); metrics.json records which was used and why.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from model.backends import PRECISIONS
from model.cli import add_model_arguments, positive_int
from model.batching import prefetched
from model.codec import DEFAULT_FLIP_CONVENTION, FLIP_CONVENTIONS, check_flip_convention
from model.geometry import box_matrices, match_boxes
from model.image import read_image
from model.io import atomic_write, atomic_write_json
from model.layout import ATTRIBUTES, NUM_LANDMARKS
from model.network import load_checkpoint
from model.pipeline import Predictor
from model.weights import file_sha256
from training.metrics import ced_figure, format_table, nme, subset_table
from model.text import counted
from training.prepare import open_wflw_root
from model.formats.wflw import (BOX_MODES, Sample, WFLWTree, attribute_matrix, crop_box, load_wflw_txt, read_json,
                                resolve_image)

BOX_CHOICES = (*BOX_MODES, "detector")

# predictions.json: the format name and version a reader checks, and the provenance it must carry.
PREDICTIONS_FORMAT = "landmark-studio-predictions"
PREDICTIONS_VERSION = 1
PREDICTIONS_META_KEYS = ("checkpoint", "sha256", "flip_test", "flip_convention", "box_mode", "input_size")
# Which faces are scored: the test list, the train list, or both (test first). A predictions file
# whose meta has no "split" holds the test split.
EVAL_SPLITS = ("test", "train", "all")
DEFAULT_SPLIT = "test"
GT_TOLERANCE_PX = 0.01  # a record's ground truth must match the annotations this closely
COORD_DECIMALS = 3       # points are stored rounded to 1e-3 px


class EvaluationCancelled(RuntimeError):
    """``predict_samples`` stopped because its ``cancel()`` returned True."""


# ----------------------------------------------------------------------------- splits


def check_split(split: str) -> str:
    """``split`` when it is one of ``EVAL_SPLITS``, else ``ValueError`` naming it and the choices."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    return split


def load_split(tree: WFLWTree, split: str = DEFAULT_SPLIT) -> tuple[list[Sample], np.ndarray]:
    """The faces of one split of a WFLW tree and their (N, 6) bool attribute flags (``ATTRIBUTES`` order).

    ``test`` and ``train`` are the two raw lists; ``all`` is the test list followed by the train list.
    Raises ``ValueError`` naming the list(s) when the split has no faces.
    """
    parts = ("test", "train") if check_split(split) == "all" else (split,)
    samples = [s for part in parts for s in load_wflw_txt(tree.annotations(part))]
    if not samples:
        raise ValueError(f"the {split} split of {tree.root} has no faces "
                         f"({', '.join(tree.annotations(part).name for part in parts)} empty)")
    return samples, attribute_matrix(samples)


# ----------------------------------------------------------------------------- predictions.json


def prediction_meta(weights: str | os.PathLike, *, flip_test: bool, flip_convention: str, box_mode: str,
                    input_size: int, split: str = DEFAULT_SPLIT, **extra) -> dict:
    """The provenance ``write_predictions`` requires: checkpoint file name and sha256, flip test,
    flip convention, box mode, input size and the split predicted (plus any ``extra`` JSON-able entries)."""
    weights = Path(weights)
    if box_mode not in BOX_CHOICES:
        raise ValueError(f"box_mode must be one of {BOX_CHOICES}, got {box_mode!r}")
    return {"checkpoint": weights.name, "sha256": file_sha256(weights), "flip_test": bool(flip_test),
            "flip_convention": check_flip_convention(flip_convention), "box_mode": box_mode,
            "input_size": int(input_size), "split": check_split(split), **extra}


def _check_points(pred, count: int, what: str) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float32)
    if pred.shape != (count, NUM_LANDMARKS, 2):
        raise ValueError(f"{what} must have shape ({count}, {NUM_LANDMARKS}, 2), got {pred.shape}")
    bad = np.flatnonzero(~np.isfinite(pred).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(f"{what} has non-finite values (faces {bad.tolist()[:10]})")
    return pred


def write_predictions(path: str | os.PathLike, samples: list[Sample], pred, meta: dict) -> Path:
    """Write ``predictions.json`` atomically, in the one schema ``read_predictions`` reads::

        {"format": "landmark-studio-predictions", "version": 1,
         "meta": {"checkpoint": file name, "sha256": hex, "flip_test": bool,
                  "flip_convention": "1.x" | "0.x", "box_mode": "landmarks" | "rect" | "detector",
                  "input_size": int, "split": "test" | "train" | "all", ...},
         "faces": [{"index": i, "image": path relative to WFLW_images/, "nme": fraction,
                    "pred": [[x, y] x 98], "gt": [[x, y] x 98]}, ...]}

    Face ``i`` is ``samples[i]`` (the split's faces in ``load_split`` order); points are image
    pixels rounded to 1e-3 px.

    Args:
        path: the file to write.
        samples: the N faces of the split the predictions are for.
        pred: (N, 98, 2) image pixels.
        meta: provenance with at least ``PREDICTIONS_META_KEYS`` (see ``prediction_meta``), and the
            split (one of ``EVAL_SPLITS``; ``DEFAULT_SPLIT`` when absent).
    """
    pred = _check_points(pred, len(samples), "pred")
    missing = [k for k in PREDICTIONS_META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"predictions meta lacks {missing} (needs {PREDICTIONS_META_KEYS})")
    meta = {**meta, "split": check_split(meta.get("split", DEFAULT_SPLIT))}
    gt = np.stack([s.landmarks for s in samples]) if samples else np.zeros((0, NUM_LANDMARKS, 2))
    per_face = nme(pred, gt) if samples else np.zeros(0)
    faces = [{"index": i, "image": s.image, "nme": float(per_face[i]),
              "pred": np.round(pred[i].astype(np.float64), COORD_DECIMALS).tolist(),
              "gt": np.round(s.landmarks.astype(np.float64), COORD_DECIMALS).tolist()}
             for i, s in enumerate(samples)]
    return atomic_write_json(path, {"format": PREDICTIONS_FORMAT, "version": PREDICTIONS_VERSION,
                                    "meta": meta, "faces": faces})


def _read_document(path: Path) -> dict:
    data = read_json(path, "predictions file")
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{path.name}: not a predictions file (expected an object with "
                         f"\"format\": {PREDICTIONS_FORMAT!r}, written by python -m training.evaluate)")
    if data.get("version") != PREDICTIONS_VERSION:
        raise ValueError(f"{path.name}: predictions version {data.get('version')!r} is not supported "
                         f"(this reader knows version {PREDICTIONS_VERSION})")
    if not isinstance(data.get("meta"), dict) or not isinstance(data.get("faces"), list):
        raise ValueError(f"{path.name}: expected 'meta' (an object) and 'faces' (a list)")
    return data


def read_predictions_meta(path: str | os.PathLike) -> dict:
    """The provenance block of a ``predictions.json`` (see ``write_predictions``), with its split
    (``DEFAULT_SPLIT`` when the file names none)."""
    meta = dict(_read_document(Path(path))["meta"])
    meta.setdefault("split", DEFAULT_SPLIT)
    return meta


def read_predictions(path: str | os.PathLike, samples: list[Sample], split: str = DEFAULT_SPLIT) -> np.ndarray:
    """Read ``predictions.json`` (``write_predictions``'s schema) for the faces of one split.

    The file must have been made for ``split``, and every face of ``samples`` must have exactly one
    record, whose ``image`` and ``gt`` match it (to ``GT_TOLERANCE_PX``): predictions made for
    another split or another face list are refused.

    Args:
        path: the file.
        samples: the split's faces, in ``load_split`` order.
        split: the split ``samples`` are (one of ``EVAL_SPLITS``).

    Returns:
        (N, 98, 2) float32 image pixels, row i for ``samples[i]``.

    Raises:
        FileNotFoundError, ValueError: naming the file and, for a bad record, its position.
    """
    path = Path(path)
    data = _read_document(path)
    made_for = data["meta"].get("split", DEFAULT_SPLIT)
    if made_for != check_split(split):
        raise ValueError(f"{path.name} holds predictions for the {made_for} split "
                         f"({counted(len(data['faces']), 'face')}), not the {split} split "
                         f"({counted(len(samples), 'face')}); make them with "
                         f"python -m training.evaluate --split {split}")
    records = data["faces"]
    if len(records) != len(samples):
        raise ValueError(f"{path.name}: {counted(len(records), 'face')}, but the {split} split has {len(samples)}")
    pred = np.full((len(samples), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    seen = np.zeros(len(samples), dtype=bool)
    for order, record in enumerate(records):
        where = f"{path.name} face record {order}"
        if not isinstance(record, dict) or not {"index", "image", "pred", "gt"} <= set(record):
            raise ValueError(f"{where}: expected an object with 'index', 'image', 'pred' and 'gt'")
        index = record["index"]
        if not isinstance(index, int) or not 0 <= index < len(samples):
            raise ValueError(f"{where}: index {index!r} outside the {split} split (0..{len(samples) - 1})")
        if seen[index]:
            raise ValueError(f"{where}: index {index} appears twice")
        sample = samples[index]
        if record["image"] != sample.image:
            raise ValueError(f"{where}: image {record['image']!r}, but {split} face {index} is {sample.image!r}")
        try:
            points = np.asarray(record["pred"], dtype=np.float32).reshape(NUM_LANDMARKS, 2)
            gt = np.asarray(record["gt"], dtype=np.float32).reshape(NUM_LANDMARKS, 2)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'pred' and 'gt' must be {NUM_LANDMARKS} [x, y] pairs") from None
        if not np.all(np.isfinite(points)):
            raise ValueError(f"{where}: 'pred' has non-finite values")
        if not np.allclose(gt, sample.landmarks, atol=GT_TOLERANCE_PX, rtol=0):
            raise ValueError(f"{where}: its ground truth differs from {split} face {index} ({sample.image}) "
                             f"of the loaded {split} split")
        pred[index], seen[index] = points, True
    return pred


# ----------------------------------------------------------------------------- prediction

# Faces per forward pass (before the flip test doubles it), gathered across images. On a GPU larger
# batches run faster (``python -m bench.gpu``); on CPU the batch only bounds memory.
DEFAULT_BATCH_SIZE = 128
# Images decoded ahead of the network, on threads (decoding releases the GIL).
READ_AHEAD = 8


def _detector_boxes(predictor: Predictor, image: np.ndarray, rects: list[np.ndarray]) -> tuple[list, list[bool]]:
    """Each annotated face's MTCNN box (the one overlapping its WFLW rectangle most), else the rectangle."""
    detected = predictor.detect(image).boxes
    pairs = match_boxes(rects, detected)
    boxes = [rect if j is None else detected[j] for rect, j in zip(rects, pairs)]
    return boxes, [j is None for j in pairs]


def _faces_by_image(samples: list[Sample]) -> dict[str, list[int]]:
    """Image name -> indices of its faces, images in order of first appearance."""
    by_image: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_image.setdefault(s.image, []).append(i)
    return by_image


def predict_samples(predictor: Predictor, samples: list[Sample], images_dir: str | os.PathLike,
                    box_mode: str = "landmarks", *, batch_size: int = DEFAULT_BATCH_SIZE,
                    crops_on_device: bool | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    cancel: Callable[[], bool] | None = None,
                    missed: list[int] | None = None) -> np.ndarray:
    """Landmarks for every face, cropped from its box, through the predictor's one batched path
    (``Predictor.batcher``): forwards of ``batch_size`` faces gathered across images.

    Args:
        predictor: a ``model.pipeline.Predictor`` (its runner, flip test, flip convention, input
            size and precision apply).
        samples: the faces; their images are read from ``images_dir``.
        box_mode: ``landmarks`` (mmpose's boxes), ``rect`` or ``detector`` (see the module doc).
        batch_size: faces per forward pass (the flip test adds their mirrors to the same pass).
        crops_on_device: cut the crops with ``model.geometry.gpu_crops`` on the predictor's device
            (True) or with ``cv2.warpAffine`` (False); ``None``: as the runner prefers (on the GPU
            for the predictor's own torch backend on CUDA). The forwards go through the runner either way.
        progress: called as ``progress(done, total)`` after each forward pass, in images whose
            faces all have landmarks.
        cancel: polled before each image; when it returns True the run stops by raising
            ``EvaluationCancelled`` (nothing partial is returned).
        missed: with ``detector`` boxes, the indices of faces MTCNN missed (the rectangle was used)
            are appended to this list.

    Returns:
        (N, 98, 2) float32 image pixels, row i for ``samples[i]``.
    """
    if box_mode not in BOX_CHOICES:
        raise ValueError(f"box_mode must be one of {BOX_CHOICES}, got {box_mode!r}")
    batcher = predictor.batcher(batch_size, crops_on_device=crops_on_device)
    by_image = _faces_by_image(samples)
    pred = np.zeros((len(samples), NUM_LANDMARKS, 2), dtype=np.float32)
    images = prefetched(lambda name: read_image(resolve_image(images_dir, name), name=name), by_image, READ_AHEAD)
    finished = reported = 0

    def report() -> None:
        nonlocal reported
        if progress is not None and finished > reported:
            progress(finished, len(by_image))
        reported = finished

    def items():
        for done, (image, indices) in enumerate(zip(images, by_image.values())):
            report()  # the batcher asks for the next image once the finished ones are handed out
            if cancel is not None and cancel():
                raise EvaluationCancelled(f"cancelled after {done} of {len(by_image)} images")
            boxes = _boxes(predictor, image, [samples[i] for i in indices], box_mode, indices, missed)
            yield tuple(indices), image, box_matrices(boxes, predictor.input_size)

    try:
        for indices, points, _ in batcher.run(items()):
            pred[list(indices)] = points
            finished += 1
    finally:
        images.close()  # stops the read-ahead threads on cancel or error
    report()
    return pred


def _boxes(predictor: Predictor, image: np.ndarray, faces: list[Sample], box_mode: str, indices: list[int],
           missed: list[int] | None) -> np.ndarray:
    """(F, 4) crop boxes of one image's faces under ``box_mode`` (``detector``: MTCNN's, see ``_detector_boxes``)."""
    if box_mode != "detector":
        return np.asarray([crop_box(s, box_mode) for s in faces], dtype=np.float64).reshape(-1, 4)
    boxes, lost = _detector_boxes(predictor, image, [np.asarray(s.box, np.float64) for s in faces])
    if missed is not None:
        missed.extend(i for i, m in zip(indices, lost) if m)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


# ----------------------------------------------------------------------------- evaluation


def _as_percent(summary: dict) -> dict:
    """A ``summarize`` result as metrics.json holds it: NME and FR in percent, AUC a fraction; ``None``
    for the numbers of an empty set (JSON has no NaN)."""
    if summary["num_faces"] == 0:
        return {"nme": None, "fr@0.1": None, "auc@0.1": None, "num_faces": 0}
    return {"nme": 100 * summary["nme"], "fr@0.1": 100 * summary["fr"], "auc@0.1": summary["auc"],
            "num_faces": summary["num_faces"]}


# --flip-convention auto: the convention a project checkpoint stores in config["flip_convention"]
# (its recipe's; training picks best.pth by it), else model.codec's default (mmpose 1.x's, 4.44).
AUTO_FLIP_CONVENTION = "auto"


def resolve_flip_convention(requested: str, config: dict, source: str = "checkpoint") -> tuple[str, str]:
    """The flip convention to evaluate with, and where it came from ("given", "checkpoint" or "default").

    Args:
        requested: "1.x", "0.x" or "auto" (the checkpoint's ``config["flip_convention"]``, else
            ``DEFAULT_FLIP_CONVENTION``).
        config: the checkpoint's training config (``model.network.load_checkpoint``; ``{}`` for mmpose files).
        source: the checkpoint's name, for the error message.
    """
    if requested != AUTO_FLIP_CONVENTION:
        return check_flip_convention(requested), "given"
    stored = config.get("flip_convention")
    if stored is None:
        return DEFAULT_FLIP_CONVENTION, "default"
    if stored not in FLIP_CONVENTIONS:
        raise ValueError(f"{source}: config.flip_convention {stored!r} is not one of {', '.join(FLIP_CONVENTIONS)}")
    return stored, "checkpoint"


def evaluate_checkpoint(wflw_root: str | os.PathLike, weights: str | os.PathLike, out: str | os.PathLike, *,
                        split: str = DEFAULT_SPLIT, box: str = "landmarks", flip_test: bool = True,
                        flip_convention: str = AUTO_FLIP_CONVENTION, precision: str = "fp32",
                        device: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Evaluate ``weights`` on one split of a WFLW root; write metrics.json, predictions.json and ced.png.

    Args:
        wflw_root: the standard WFLW tree (``training.prepare.open_wflw_root``).
        weights: a checkpoint file (project or mmpose); a project checkpoint's ``config.input_size``
            sets the crop size.
        out: folder for the three files (created).
        split: the faces scored, one of ``EVAL_SPLITS`` (``load_split``); recorded in both files.
        box: crop box mode, one of ``BOX_CHOICES``.
        flip_test: test-time flip.
        flip_convention: "1.x", "0.x" or "auto" (``resolve_flip_convention``); metrics.json
            records the one used ("flip_convention") and where it came from ("flip_convention_source").
        precision: "fp32" (default, every device) or "bf16" (autocast; the run is repeated in fp32
            and ``bf16_deviation_px`` {"mean", "max"} reports how far bf16 moved the points).
        device: "auto"/None (CUDA when present), "cpu", "cuda" or "cuda:N".
        batch_size: faces per forward pass, gathered across images.

    Returns:
        the metrics dict written to metrics.json (NME and FR in percent, AUC a fraction; subsets
        without faces have ``None`` for their numbers).
    """
    if box not in BOX_CHOICES:
        raise ValueError(f"box {box!r} is not supported: use one of {BOX_CHOICES}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported: use one of {PRECISIONS}")
    if flip_convention != AUTO_FLIP_CONVENTION:
        check_flip_convention(flip_convention)
    tree = open_wflw_root(wflw_root)
    samples, flags = load_split(tree, split)
    weights = Path(weights)
    model, config = load_checkpoint(weights)
    convention, convention_source = resolve_flip_convention(flip_convention, config, weights.name)

    def run(prec: str) -> tuple[np.ndarray, list[int], Predictor]:
        # eager torch: exact at any input size (ONNX graphs are fixed at 256, int8 moves NME)
        predictor = Predictor(model, device=device, flip_test=flip_test, flip_convention=convention,
                              backend="torch", precision=prec, input_size=config.get("input_size"))
        lost: list[int] = []
        return predict_samples(predictor, samples, tree.images, box, batch_size=batch_size, missed=lost), lost, predictor

    pred, missed, predictor = run(precision)
    per_image = nme(pred, np.stack([s.landmarks for s in samples]))
    table = subset_table(per_image, flags)
    meta = prediction_meta(weights, flip_test=flip_test, flip_convention=convention, box_mode=box,
                           input_size=predictor.input_size, split=split, precision=precision)
    metrics = {**_as_percent(table["full"]), **meta, "flip_convention_source": convention_source,
               "weights": str(weights), "subsets": {name: _as_percent(table[name]) for name in ATTRIBUTES}}
    if box == "detector":
        metrics["detector_missed"] = len(missed)
    if precision == "bf16":
        distance = np.linalg.norm(pred - run("fp32")[0], axis=-1)
        metrics["bf16_deviation_px"] = {"mean": float(distance.mean()), "max": float(distance.max())}
    _write_results(Path(out), metrics, samples, pred, meta, per_image, f"{weights.name} ({split} split, {box} boxes)")
    _print_results(table, metrics)
    return metrics


def _print_results(table: dict, metrics: dict) -> None:
    """The WFLW table (the subsets that have faces) under a line naming the split, then the
    settings: boxes, flip test, precision, input size (and bf16's cost)."""
    split, faces = metrics["split"], counted(metrics["num_faces"], "face")
    print(f"{split} split, {faces}" + ("" if split == "test" else " (the first column is the whole split)"))
    print(format_table({name: row for name, row in table.items() if name == "full" or row["num_faces"]}))
    flip = f"on ({metrics['flip_convention']}, {metrics['flip_convention_source']})" if metrics["flip_test"] else "off"
    missed = metrics.get("detector_missed")
    print(f"split: {split}, box: {metrics['box_mode']}, flip test: {flip}, precision: {metrics['precision']}, "
          f"input size: {metrics['input_size']}, faces: {metrics['num_faces']}"
          + (f", detector missed {missed} (rectangle used)" if missed is not None else ""))
    if "bf16_deviation_px" in metrics:
        print(f"bf16 moved the points by {metrics['bf16_deviation_px']['mean']:.4f} px on average, "
              f"{metrics['bf16_deviation_px']['max']:.4f} px at most (against fp32)")


def _write_results(out: Path, metrics: dict, samples: list[Sample], pred: np.ndarray, meta: dict,
                   per_image: np.ndarray, label: str) -> None:
    """metrics.json, predictions.json and ced.png into ``out`` (created), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics, indent=2)
    write_predictions(out / "predictions.json", samples, pred, meta)
    figure = ced_figure({label: per_image})
    atomic_write(out / "ced.png", lambda tmp: figure.savefig(tmp, format="png"))


PROG = "python -m training.evaluate"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Evaluate a checkpoint on one split of a WFLW root.")
    parser.add_argument("--wflw-root", required=True, help="WFLW root (WFLW_images/, WFLW_annotations/)")
    parser.add_argument("--out", required=True, help="folder for metrics.json, predictions.json, ced.png")
    add_model_arguments(parser, flags=("weights", "device", "no_flip"), weights_required=True,
                        weights_help="checkpoint to evaluate (a training checkpoint or an mmpose file)")
    parser.add_argument("--split", default=DEFAULT_SPLIT, choices=EVAL_SPLITS,
                        help="faces to score: test (WFLW's test list, or the photos model.annotate held out of "
                             "your own), train, or all (test then train) (default: test)")
    parser.add_argument("--box", default="landmarks", choices=BOX_CHOICES,
                        help="crop box: mmpose's box from the landmarks (published), WFLW rectangle, or MTCNN "
                             "(default: landmarks)")
    parser.add_argument("--flip-convention", default=AUTO_FLIP_CONVENTION,
                        choices=(AUTO_FLIP_CONVENTION, *FLIP_CONVENTIONS),
                        help="flip-back formula: 1.x (x -> 1 - x - 1/size, NME 4.44), 0.x (x -> 1 - x, 4.41), or "
                             "auto: the one a training checkpoint stores (its recipe's, which picked best.pth), "
                             f"else {DEFAULT_FLIP_CONVENTION} (default: auto)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast instead of fp32; also runs fp32 and reports the deviation in px")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"faces per forward pass, gathered across images (default: {DEFAULT_BATCH_SIZE})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status. A folder that is not a WFLW root, or a split
    without faces, is one line on stderr and exit status 2 (before the checkpoint is read)."""
    args = parse_args(argv)
    try:
        load_split(open_wflw_root(args.wflw_root), args.split)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    evaluate_checkpoint(args.wflw_root, args.weights, args.out, split=args.split, box=args.box,
                        flip_test=not args.no_flip, flip_convention=args.flip_convention,
                        precision="bf16" if args.bf16 else "fp32", device=args.device, batch_size=args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
