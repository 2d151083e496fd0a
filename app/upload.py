"""Upload tab callbacks: landmarks for uploaded images, ground truth comparison, downloads.

``predict`` is the ``/predict`` API endpoint and the only callback here that runs the detector and
the network (in the shared ``NETWORK`` concurrency group): an image file in, the annotated image
and the JSON record of ``model.pipeline.to_record`` (the CLI's schema) out, plus the faces as a
``gr.State`` for ``describe``. ``describe`` and ``redraw`` only draw, match ground truth and format:
pasting a ground-truth line or toggling labels never runs the network again.

Faces are numbered in reading order (rows top to bottom, left to right), on the image and in the table.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from model.detector import DEFAULT_MIN_FACE_SIZE, DEFAULT_THRESHOLDS, Detections
from model.draw import SCORE_DECIMALS, draw_detections, draw_faces, reading_order
from model.geometry import landmark_box, match_boxes
from model.image import ImageError, read_image
from model.pipeline import Face, crop_faces, detections_record, to_record
from training import metrics
from training.wflw import RAW_FIELDS, SUBSET_FIELDS, load_wflw_json, parse_wflw_line

# Zoomed face crops in the gallery, pixels.
CROP_VIEW_SIZE = 256

# A detected face is the annotated one when its box overlaps the annotation's landmark box this much
# (MTCNN boxes sit inside the landmark extent on the forehead side; 0.3 tolerates that).
GT_MIN_IOU = 0.3

# The detector's own defaults: MTCNN's final (O-net) score threshold and smallest face side searched.
MIN_SCORE = DEFAULT_THRESHOLDS[-1]
MIN_FACE_SIZE = DEFAULT_MIN_FACE_SIZE

# Face orders of the table and crop gallery (the numbers on the image stay in reading order).
READING_ORDER = "reading order"
LEAST_CONSISTENT = "least consistent first"
ORDERS = (READING_ORDER, LEAST_CONSISTENT)

GT_LINE_LABEL = f"WFLW annotation line ({RAW_FIELDS} or {SUBSET_FIELDS} fields), one per face"
# The Upload tab's NME: landmarks predicted from the detector's box. The WFLW browser crops from
# the annotation's landmark box (mmpose's evaluation), so the same face scores differently there.
NME_BOX = "detector box"
TABLE_COLUMNS = ["face", "x1", "y1", "x2", "y2", "score", "flip error (%)", "NME (%)", "NME box", "WFLW rank"]


def _read(path: str | None) -> tuple[str, np.ndarray]:
    if not path:
        raise gr.Error("Upload an image first.", print_exception=False)
    try:
        return Path(path).name, read_image(path, name=Path(path).name)
    except ImageError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def filter_detections(detections: Detections, min_score: float, min_size: float) -> Detections:
    """The detections scoring at least ``min_score`` and, when ``min_size`` is above the detector's
    own smallest search size (``MIN_FACE_SIZE``), whose box's shorter side is at least ``min_size`` px.

    At the defaults nothing is dropped: MTCNN searches from 20 px faces but may box a face a little
    smaller, and those boxes stay, as without the controls.
    """
    sides = np.minimum(detections.boxes[:, 2] - detections.boxes[:, 0], detections.boxes[:, 3] - detections.boxes[:, 1])
    keep = detections.scores >= min_score
    if min_size > MIN_FACE_SIZE:
        keep &= sides >= min_size
    return Detections(detections.boxes[keep], detections.scores[keep], detections.points[keep])


def _thresholds(min_score, min_size) -> tuple[float, float]:
    score = MIN_SCORE if min_score is None else float(min_score)
    size = MIN_FACE_SIZE if min_size is None else float(min_size)
    if not 0.0 <= score <= 1.0:
        raise gr.Error(f"Minimum score must be between 0 and 1, got {score:g}.", print_exception=False)
    if size < 0:
        raise gr.Error(f"Minimum face size must be at least 0 pixels, got {size:g}.", print_exception=False)
    return score, size


def detection_note(name: str, found: int, kept: int, max_faces: int) -> str | None:
    """Why the result has fewer faces than the user may expect, or ``None`` when nothing is missing."""
    if found == 0:
        return f"{name}: no face found."
    if kept < found:
        return (f"{name}: {found} faces found; landmarks for the {kept} most confident only "
                f"(the app's limit of {max_faces} faces per image, --max-faces).")
    return None


def _in_reading_order(faces: list[Face]) -> list[Face]:
    return [faces[i] for i in reading_order([f.box for f in faces])] if faces else []


def _detections_in_reading_order(detections: Detections) -> Detections:
    order = reading_order(detections.boxes)
    return dataclasses.replace(detections, boxes=detections.boxes[order], scores=detections.scores[order],
                               points=detections.points[order])


def predict(ctx: AppContext, image_path: str | None, min_score: float = MIN_SCORE,
            min_size: float = MIN_FACE_SIZE):
    """``/predict``: (annotated image, JSON record as text, faces state) for one image file.

    Faces are in reading order. Faces of an image that belongs to the loaded WFLW annotations
    (same file name) get their ground truth drawn and an ``"nme"`` entry. When no face is found,
    or more than the predictor's ``max_faces``, the record carries a ``"warning"`` (also a pop-up).
    """
    name, image = _read(image_path)
    score, size = _thresholds(min_score, min_size)
    if ctx.predictor is None:
        detections = _detections_in_reading_order(filter_detections(ctx.detector.detect(image), score, size))
        record = detections_record(name, image.shape, detections, ctx.banner or "98-point model not loaded")
        annotated = draw_detections(image, detections, numbers=list(range(1, len(detections) + 1)))
        return annotated, json.dumps(record, indent=1), {"image": name, "faces": None, "record": record}
    detections = filter_detections(ctx.predictor.detect(image), score, size)
    faces = _in_reading_order(ctx.predictor.faces_from_detections(image, detections))
    note = detection_note(name, len(detections), len(faces), ctx.predictor.max_faces)
    if note:
        gr.Warning(note)
    truths, _ = match_ground_truth(faces, _wflw_truths(ctx, name))
    has_gt = any(t is not None for t in truths)
    record = to_record(name, image.shape, faces, nme=_nme_values(faces, truths) if has_gt else None, warning=note)
    annotated = draw_faces(image, faces, ground_truth=truths if has_gt else None,
                           numbers=list(range(1, len(faces) + 1)))
    return annotated, json.dumps(record, indent=1), {"image": name, "faces": faces, "note": note}


def match_ground_truth(faces: list[Face], truths: list[np.ndarray]) -> tuple[list[np.ndarray | None], list[int]]:
    """(each detected face's annotated landmarks or ``None``, indices of the truths that matched no face),
    matched by overlap of the face box with the annotation's landmark box."""
    if not truths:
        return [None] * len(faces), []
    if not faces:
        return [], list(range(len(truths)))
    pairs = match_boxes([f.box for f in faces], [landmark_box(t) for t in truths], GT_MIN_IOU)
    used = {j for j in pairs if j is not None}
    return [None if j is None else truths[j] for j in pairs], [j for j in range(len(truths)) if j not in used]


def _user_truths(name: str, gt_line: str | None, gt_file: str | None) -> list[np.ndarray]:
    """Ground truth the user supplied: WFLW annotation lines and/or an mmpose WFLW JSON file."""
    truths: list[np.ndarray] = []
    try:
        if gt_line and gt_line.strip():
            lines = [line for line in gt_line.strip().splitlines() if line.strip()]
            truths += [parse_wflw_line(line, "pasted", n).landmarks for n, line in enumerate(lines, 1)]
        if gt_file:
            samples = load_wflw_json(gt_file)
            same = [s for s in samples if Path(s.image).name == name]
            truths += [s.landmarks for s in (same or samples)]
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(f"Ground truth: {exc}", print_exception=False) from None
    return truths


def _wflw_truths(ctx: AppContext, name: str) -> list[np.ndarray]:
    if ctx.testset is None:
        return []
    return [ctx.testset.samples[i].landmarks for i in ctx.testset.faces_of_image(name)]


def _nme_values(faces: list[Face], truths: list[np.ndarray | None]) -> list[float | None]:
    return [None if gt is None else float(metrics.nme(face.landmarks[None], gt[None])[0])
            for face, gt in zip(faces, truths)]


def face_order(faces: list[Face], order: str | None) -> list[int]:
    """Row order of the table and gallery: reading order, or the largest ``flip_error`` first
    (faces without one last)."""
    if order in (None, READING_ORDER):
        return list(range(len(faces)))
    if order != LEAST_CONSISTENT:
        raise gr.Error(f"Order must be one of {', '.join(ORDERS)}; got {order!r}.", print_exception=False)
    return sorted(range(len(faces)), key=lambda i: -(faces[i].flip_error if faces[i].flip_error is not None else -1))


def _ranks(ctx: AppContext, nmes: list[float | None]) -> list[str]:
    """Each NME's rank among the loaded WFLW test set's faces ("3 / 2500", 1 = worst), or ""."""
    if ctx.testset is None or ctx.testset.nme is None:
        return [""] * len(nmes)
    return ["" if v is None else f"{ctx.testset.rank(v)[0]} / {len(ctx.testset)}" for v in nmes]


def _face_rows(faces: list[Face], nmes: list[float | None], ranks: list[str], rows: list[int]) -> pd.DataFrame:
    table = [[i + 1, *[round(float(v), 1) for v in faces[i].box], f"{faces[i].score:.{SCORE_DECIMALS}f}",
              None if faces[i].flip_error is None else round(faces[i].flip_error, 2),
              None if nmes[i] is None else round(100 * nmes[i], 2), "" if nmes[i] is None else NME_BOX, ranks[i]]
             for i in rows]
    return pd.DataFrame(table, columns=TABLE_COLUMNS)


def _summary(name: str, image: np.ndarray, faces: list[Face], nmes: list[float | None], ranks: list[str],
             note: str | None, unmatched: list[int]) -> str:
    h, w = image.shape[:2]
    text = f"**{len(faces)} face(s)** in {name} ({w}x{h})." if faces else f"No face found in {name} ({w}x{h})."
    if note and faces:
        text += f" ⚠ {note}"
    scored = [(i, v, r) for i, (v, r) in enumerate(zip(nmes, ranks), start=1) if v is not None]
    if scored:
        text += (f" Ground truth: green rings, error lines magenta. NME uses the landmarks predicted from the "
                 f"{NME_BOX} (MTCNN); the WFLW browser crops from the annotation's landmark box, as the "
                 "published evaluation does, so its NME for the same face differs.\n"
                 + "\n".join(f"- face {i}: NME **{100 * v:.2f} %**"
                             + (f", rank {r} in the loaded WFLW test set (1 = worst)" if r else "")
                             for i, v, r in scored))
    if unmatched:
        text += ("\n\n⚠ Ground truth " + ", ".join(f"#{j + 1}" for j in unmatched)
                 + " matched no detected face (its landmark box overlaps no face box by "
                 f"{GT_MIN_IOU:g} IoU or more): check that it belongs to this image.")
    return text


def _crops(annotated: np.ndarray, faces: list[Face], rows: list[int]) -> list[tuple[np.ndarray, str]]:
    if not faces:
        return []
    views, _ = crop_faces(annotated, np.stack([faces[i].box for i in rows]), size=CROP_VIEW_SIZE)
    return [(view, f"face {i + 1} · score {faces[i].score:.{SCORE_DECIMALS}f}"
             + ("" if faces[i].flip_error is None else f" · flip {faces[i].flip_error:.1f} %"))
            for view, i in zip(views, rows)]


def _download(ctx: AppContext, name: str, record: dict) -> tuple[str, str]:
    text = json.dumps(record, indent=1)
    path = ctx.output_file(Path(name).stem + ".json")
    path.write_text(text, encoding="utf-8")
    return str(path), text


def describe(ctx: AppContext, image_path: str | None, result: dict | None, labels: bool, gt_line: str | None,
             gt_file: str | None, order: str | None = READING_ORDER):
    """Everything around a ``/predict`` result, from the faces it kept (no network): the image
    redrawn with numbers, labels and ground truth, zoomed crops, the table, the JSON download and a summary.

    Returns:
        (annotated image, crops [(image, caption)], table, JSON file path, summary Markdown, JSON text).
    """
    name, image = _read(image_path)
    if not result or result.get("image") != name:
        raise gr.Error("Press Find landmarks first.", print_exception=False)
    if result["faces"] is None:  # detector-only mode
        path, text = _download(ctx, name, result["record"])
        summary = (f"**{len(result['record']['faces'])} face(s)** in {name}: boxes and MTCNN's five points only; "
                   "the 98-point model is not loaded (see the banner).")
        return gr.skip(), [], pd.DataFrame(columns=TABLE_COLUMNS), path, summary, text
    faces: list[Face] = result["faces"]
    truths, unmatched = match_ground_truth(faces, _user_truths(name, gt_line, gt_file) or _wflw_truths(ctx, name))
    if unmatched:
        gr.Warning(f"Ground truth {', '.join(f'#{j + 1}' for j in unmatched)} matched no detected face.")
    has_gt = any(t is not None for t in truths)
    nmes = _nme_values(faces, truths)
    record = to_record(name, image.shape, faces, nme=nmes if has_gt else None, warning=result.get("note"))
    annotated = draw_faces(image, faces, labels=bool(labels), ground_truth=truths if has_gt else None,
                           numbers=list(range(1, len(faces) + 1)))
    rows, ranks = face_order(faces, order), _ranks(ctx, nmes)
    path, text = _download(ctx, name, record)
    return (annotated, _crops(annotated, faces, rows), _face_rows(faces, nmes, ranks, rows), path,
            _summary(name, image, faces, nmes, ranks, result.get("note"), unmatched), text)


def redraw(ctx: AppContext, image_path: str | None, result: dict | None, labels: bool, gt_line: str | None,
           gt_file: str | None, order: str | None = READING_ORDER):
    """Labels, ground truth or order changed: ``describe`` again, or nothing at all (no pop-up)
    while there is no result to redraw (no image yet, or an image not yet run)."""
    if not image_path or not result or result.get("image") != Path(image_path).name:
        return tuple(gr.skip() for _ in range(6))
    return describe(ctx, image_path, result, labels, gt_line, gt_file, order)


def clear_results():
    """A new image was chosen: drop the previous image's results (so nothing redraws them on it)."""
    return None, [], pd.DataFrame(columns=TABLE_COLUMNS), None, "", "", None


def predict_batch(ctx: AppContext, paths: list[str] | None, labels: bool):
    """Several images at once: ([(annotated, caption)], JSON file of all records, summary Markdown).

    Unreadable files are listed in the summary and skipped; the others are processed.
    """
    if not paths:
        raise gr.Error("Choose one or more image files first.", print_exception=False)
    gallery, records, problems = [], [], []
    for path in paths:
        try:
            name, image = Path(path).name, read_image(path, name=Path(path).name)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        annotated, record = _one_of_batch(ctx, name, image, bool(labels))
        gallery.append((annotated, f"{name}: {len(record['faces'])} face(s)"))
        records.append(record)
    path = ctx.output_file("landmarks.json")
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    summary = f"{len(records)} image(s) processed, {sum(len(r['faces']) for r in records)} face(s)."
    notes = [r["warning"] for r in records if r.get("warning") and ctx.predictor is not None]
    if notes:
        summary += "\n\n" + "\n".join(f"- {n}" for n in notes)
    if problems:
        summary += "\n\nSkipped:\n" + "\n".join(f"- {p}" for p in problems)
    return gallery, str(path), summary


def _one_of_batch(ctx: AppContext, name: str, image: np.ndarray, labels: bool) -> tuple[np.ndarray, dict]:
    """(annotated image, record) of one image of a batch, faces in reading order."""
    if ctx.predictor is None:
        detections = _detections_in_reading_order(ctx.detector.detect(image))
        return (draw_detections(image, detections, numbers=list(range(1, len(detections) + 1))),
                detections_record(name, image.shape, detections, ctx.banner or "98-point model not loaded"))
    detections = ctx.predictor.detect(image)
    faces = _in_reading_order(ctx.predictor.faces_from_detections(image, detections))
    note = detection_note(name, len(detections), len(faces), ctx.predictor.max_faces)
    return (draw_faces(image, faces, labels=labels, numbers=list(range(1, len(faces) + 1))),
            to_record(name, image.shape, faces, warning=note))
