"""Upload tab callbacks: landmarks for uploaded images, ground truth comparison, downloads.

``predict`` is the ``/predict`` API endpoint: an image file in, the annotated image and the JSON
record of ``model.pipeline.to_record`` (the CLI's schema) out.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from model.detector import Detections
from model.draw import draw_box, draw_faces, draw_five_points
from model.geometry import landmark_box, match_boxes
from model.image import ImageError, read_image
from model.pipeline import Face, crop_faces, to_record
from training import metrics
from training.wflw import load_wflw_json, parse_wflw_line

# Zoomed face crops in the gallery, pixels.
CROP_VIEW_SIZE = 256

# A detected face is the annotated one when its box overlaps the annotation's landmark box this much
# (MTCNN boxes sit inside the landmark extent on the forehead side; 0.3 tolerates that).
GT_MIN_IOU = 0.3

TABLE_COLUMNS = ["face", "x1", "y1", "x2", "y2", "score", "NME (%)", "WFLW rank"]


def _read(path: str | None) -> tuple[str, np.ndarray]:
    if not path:
        raise gr.Error("Upload an image first.")
    try:
        return Path(path).name, read_image(path, name=Path(path).name)
    except ImageError as exc:
        raise gr.Error(str(exc)) from None


def _run(ctx: AppContext, name: str, image: np.ndarray) -> tuple[list[Face], Detections | None, str | None]:
    """(faces with 98 points, None, note), or without a model ([], MTCNN's detections, None).

    ``note`` (see ``detection_note``) says when no face was found or the ``max_faces`` cap was hit.
    """
    if ctx.predictor is None:
        return [], ctx.detector.detect(image), None
    detections = ctx.predictor.detect(image)
    faces = ctx.predictor.faces_from_detections(image, detections)
    return faces, None, detection_note(name, len(detections), len(faces), ctx.predictor.max_faces)


def detection_note(name: str, found: int, kept: int, max_faces: int) -> str | None:
    """Why the result has fewer faces than the user may expect, or ``None`` when nothing is missing."""
    if found == 0:
        return f"{name}: no face found."
    if kept < found:
        return (f"{name}: {found} faces found; landmarks for the {kept} most confident only "
                f"(the app's limit of {max_faces} faces per image, --max-faces).")
    return None


def _detector_only(ctx: AppContext, name: str, image: np.ndarray, detections) -> tuple[np.ndarray, dict]:
    out = image
    for box, score in zip(detections.boxes, detections.scores):
        out = draw_box(out, box, float(score))
    out = draw_five_points(out, detections.points)
    record = {"image": name, "width": int(image.shape[1]), "height": int(image.shape[0]),
              "faces": [{"box": [round(float(v), 2) for v in box], "score": round(float(s), 4),
                         "five_points": [[round(float(x), 2), round(float(y), 2)] for x, y in pts]}
                        for box, s, pts in zip(detections.boxes, detections.scores, detections.points)],
              "warning": ctx.banner or "98-point model not loaded"}
    return out, record


def match_ground_truth(faces: list[Face], truths: list[np.ndarray]) -> list[np.ndarray | None]:
    """Each detected face's annotated landmarks (matched by box overlap), or ``None``."""
    if not truths:
        return [None] * len(faces)
    pairs = match_boxes([f.box for f in faces], [landmark_box(t) for t in truths], GT_MIN_IOU)
    return [None if j is None else truths[j] for j in pairs]


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
        raise gr.Error(f"Ground truth: {exc}") from None
    return truths


def _wflw_truths(ctx: AppContext, name: str) -> list[np.ndarray]:
    if ctx.testset is None:
        return []
    return [ctx.testset.samples[i].landmarks for i in ctx.testset.faces_of_image(name)]


def _nme_values(faces: list[Face], truths: list[np.ndarray | None]) -> list[float | None]:
    values: list[float | None] = []
    for face, gt in zip(faces, truths):
        values.append(None if gt is None else float(metrics.nme(face.landmarks[None], gt[None])[0]))
    return values


def predict(ctx: AppContext, image_path: str | None) -> tuple[np.ndarray, str]:
    """``/predict``: (annotated image, JSON record as text) for one image file.

    Faces of an image that belongs to the loaded WFLW annotations (same file name) get their
    ground truth drawn and an ``"nme"`` entry. When no face is found, or more than the predictor's
    ``max_faces``, the record carries a ``"warning"`` saying so (also shown as a pop-up).
    """
    name, image = _read(image_path)
    faces, detections, note = _run(ctx, name, image)
    if detections is not None:
        annotated, record = _detector_only(ctx, name, image, detections)
        return annotated, json.dumps(record, indent=1)
    truths = match_ground_truth(faces, _wflw_truths(ctx, name))
    has_gt = any(t is not None for t in truths)
    record = to_record(name, image.shape, faces, nme=_nme_values(faces, truths) if has_gt else None)
    if note:
        record["warning"] = note
        gr.Warning(note)
    annotated = draw_faces(image, faces, ground_truth=truths if has_gt else None)
    return annotated, json.dumps(record, indent=1)


def describe(ctx: AppContext, image_path: str | None, labels: bool, gt_line: str | None, gt_file: str | None,
             record_text: str | None):
    """Everything around a ``/predict`` result: the image redrawn with labels and ground truth,
    zoomed crops, the results table, the JSON download and a summary line.

    Returns:
        (annotated image, crops [(image, caption)], table, JSON file path, summary Markdown, JSON text).
    """
    name, image = _read(image_path)
    note = None
    if ctx.predictor is None or not record_text:
        faces, detections, note = _run(ctx, name, image)
        if detections is not None:
            annotated, record = _detector_only(ctx, name, image, detections)
            text = json.dumps(record, indent=1)
            path = ctx.output_file(Path(name).stem + ".json")
            path.write_text(text, encoding="utf-8")
            summary = (f"**{len(detections)} face(s)** in `{name}`: boxes and MTCNN's five points only; "
                       "the 98-point model is not loaded (see the banner).")
            return annotated, [], pd.DataFrame(columns=TABLE_COLUMNS), str(path), summary, text
    else:
        record = json.loads(record_text)
        note = record.get("warning")
        faces = [Face(np.asarray(f["box"], np.float32), float(f["score"]), np.asarray(f["landmarks"], np.float32))
                 for f in record["faces"]]
    user = _user_truths(name, gt_line, gt_file)
    truths = match_ground_truth(faces, user or _wflw_truths(ctx, name))
    has_gt = any(t is not None for t in truths)
    nmes = _nme_values(faces, truths)
    record = to_record(name, image.shape, faces, nme=nmes if has_gt else None)
    if note:
        record["warning"] = note
    annotated = draw_faces(image, faces, labels=bool(labels), ground_truth=truths if has_gt else None)

    ranked = ctx.testset is not None and ctx.testset.nme is not None
    rows, lines = [], []
    for i, (face, value) in enumerate(zip(faces, nmes), start=1):
        rank = ""
        if value is not None and ranked:
            r, total = ctx.testset.rank(value)
            rank = f"{r} / {total}"
        rows.append([i, *[round(float(v), 1) for v in face.box], round(face.score, 3),
                     None if value is None else round(100 * value, 2), rank])
        if value is not None:
            where = (f", rank {rank} in the loaded WFLW test set (1 = worst)" if rank else
                     " (load a WFLW root with predictions to rank it among the test set)")
            lines.append(f"- face {i}: NME **{100 * value:.2f} %**{where}")
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)

    crops = []
    if faces:
        views, _ = crop_faces(annotated, np.stack([f.box for f in faces]), size=CROP_VIEW_SIZE)
        crops = [(view, f"face {i} · score {f.score:.2f}") for i, (view, f) in enumerate(zip(views, faces), start=1)]

    text = json.dumps(record, indent=1)
    path = ctx.output_file(Path(name).stem + ".json")
    path.write_text(text, encoding="utf-8")
    h, w = image.shape[:2]
    summary = f"**{len(faces)} face(s)** in `{name}` ({w}x{h})." if faces else f"No face found in `{name}` ({w}x{h})."
    if note and faces:
        summary += f" ⚠ {note}"
    if has_gt:
        summary += " Ground truth: green rings, error lines magenta.\n" + "\n".join(lines)
    return annotated, crops, table, str(path), summary, text


def redraw(ctx: AppContext, image_path: str | None, labels: bool, gt_line: str | None, gt_file: str | None,
           record_text: str | None):
    """The "Show landmark indices" toggle: ``describe`` again, or nothing at all (no pop-up) while
    there is no result to redraw (no image yet, or an image not yet run)."""
    if not image_path or not record_text:
        return tuple(gr.skip() for _ in range(6))
    return describe(ctx, image_path, labels, gt_line, gt_file, record_text)


def clear_results():
    """A new image was chosen: drop the previous image's results (so nothing redraws them on it)."""
    return None, [], pd.DataFrame(columns=TABLE_COLUMNS), None, "", ""


def predict_batch(ctx: AppContext, paths: list[str] | None, labels: bool):
    """Several images at once: ([(annotated, caption)], JSON file of all records, summary Markdown).

    Unreadable files are listed in the summary and skipped; the others are processed.
    """
    if not paths:
        raise gr.Error("Choose one or more image files first.")
    gallery, records, problems, notes = [], [], [], []
    for path in paths:
        try:
            name, image = Path(path).name, read_image(path, name=Path(path).name)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        faces, detections, note = _run(ctx, name, image)
        if detections is not None:
            annotated, record = _detector_only(ctx, name, image, detections)
            count = len(detections)
        else:
            annotated, record = draw_faces(image, faces, labels=bool(labels)), to_record(name, image.shape, faces)
            count = len(faces)
            if note:
                record["warning"] = note
                notes.append(note)
        gallery.append((annotated, f"{name}: {count} face(s)"))
        records.append(record)
    path = ctx.output_file("landmarks.json")
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    summary = f"{len(records)} image(s) processed, {sum(len(r['faces']) for r in records)} face(s)."
    if notes:
        summary += "\n\n" + "\n".join(f"- {n}" for n in notes)
    if problems:
        summary += "\n\nSkipped:\n" + "\n".join(f"- {p}" for p in problems)
    return gallery, str(path), summary
