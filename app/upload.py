"""Upload tab callbacks (``app.tabs.upload`` lays the tab out): landmarks for uploaded images,
ground truth comparison, downloads.

``predict`` is the ``/predict`` API endpoint and the only callback here that decodes the image and
runs the detector and the network (in the shared ``NETWORK`` concurrency group): an image file in,
the annotated image and the JSON record of ``model.pipeline.to_record`` (the CLI's schema) out,
plus everything it computed as a ``gr.State``. ``describe`` only formats that state (crops, table,
summary, download); ``redraw`` draws it again from the kept pixels when labels or a pasted ground
truth change: neither ever decodes the upload again or runs a model.

Images go back as JPEG files, each encoded once (``image_file``): ``describe`` hands back the file
``predict`` wrote unless it drew something new. Gradio's own encoding of numpy outputs (WebP) took
20 ms for a 512 px image and 90 ms for a 1024 px one on 2 CPU cores, JPEG 1-3 ms.

Without the 98-point model (detector-only mode) the same outputs show MTCNN's boxes, scores and
five points (``detector_only``). Faces are numbered in reading order (``model.order``), on the
image, in the table and in the record.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pandas as pd

from app.context import AppContext
from app.thresholds import face_filter
from model.detector import Detections
from model.text import counted
from model.draw import LEGEND_TEXT, SCORE_DECIMALS, draw_detections, draw_faces, draw_on_crops
from model.geometry import landmark_box, match_boxes
from model.image import ImageError, read_image
from model.layout import NUM_LANDMARKS, NUM_LANDMARKS_68
from model.pipeline import Face, crop_faces, detections_record, to_record
from model.record import in_scheme as record_in_scheme
from model.selection import DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE, Selection, select_faces, selected
from training import metrics
from model.formats.wflw import RAW_FIELDS, SUBSET_FIELDS, load_wflw_json, parse_wflw_line

# Zoomed face crops in the gallery, pixels.
CROP_VIEW_SIZE = 256

# JPEG quality of the images sent back: the coloured points stay crisp at 90 (the libjpeg default 75
# blurs their colours into the skin).
JPEG_QUALITY = 90

# A detected face is the annotated one when its box overlaps the annotation's landmark box this much
# (MTCNN boxes sit inside the landmark extent on the forehead side; 0.3 tolerates that).
GT_MIN_IOU = 0.3

# The /predict API's point schemes: (label, value) as the JSON accordion's radio offers them.
SCHEME_CHOICES = [("98 (WFLW)", NUM_LANDMARKS), ("68 (300W / iBUG)", NUM_LANDMARKS_68)]

# Face orders of the table and crop gallery (the numbers on the image stay in reading order).
READING_ORDER = "reading order"
LEAST_CONSISTENT = "least consistent first"
ORDERS = (READING_ORDER, LEAST_CONSISTENT)

GT_LINE_LABEL = f"WFLW annotation line ({RAW_FIELDS} or {SUBSET_FIELDS} fields), one per face"
# The Upload tab's NME: landmarks predicted from the detector's box. The WFLW browser crops from
# the annotation's landmark box (mmpose's evaluation), so the same face scores differently there.
NME_BOX = "detector box"
# Score first after the number: on a phone the table scrolls sideways and the box coordinates, the
# least read, are the ones off screen.
TABLE_COLUMNS = ["face", "score", "flip error (%)", "NME (%)", "NME box", "WFLW rank", "x1", "y1", "x2", "y2"]
NO_MODEL = "98-point model not loaded"


def image_file(ctx: AppContext, name: str, image: np.ndarray) -> str:
    """``image`` ((H, W, 3) uint8 RGB) encoded once as a JPEG file ``name`` in a fresh download
    folder (``AppContext.output_file``); returns its path, which Gradio serves as it is."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise gr.Error(f"{name}: the image could not be encoded as JPEG.", print_exception=False)
    path = ctx.output_file(name)
    path.write_bytes(data.tobytes())
    return str(path)


def _shown_name(name: str, what: str = "landmarks") -> str:
    """The file name an image of ``name``'s results goes back under: "group-landmarks.jpg"."""
    return f"{Path(name).stem}-{what}.jpg"


def _read(path: str | None) -> tuple[str, np.ndarray]:
    if not path:
        raise gr.Error("Upload an image first.", print_exception=False)
    try:
        return Path(path).name, read_image(path, name=Path(path).name)
    except ImageError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def detection_note(name: str, selection: Selection) -> str | None:
    """Why the result has fewer faces than the user may expect (none found, or more than
    ``max_faces``: ``Selection.limit_note``), or ``None`` when nothing is missing."""
    if selection.passed == 0:
        return f"{name}: no face found."
    note = selection.limit_note()
    return None if note is None else f"{name}: {note}."


def detector_only(ctx: AppContext, name: str, image: np.ndarray, detections: Detections):
    """Detector-only mode (no 98-point model): (annotated image with numbered boxes, scores and
    MTCNN's five points, record with ``"five_points"``) of ``detections`` in reading order."""
    annotated = draw_detections(image, detections, numbers=list(range(1, len(detections) + 1)))
    return annotated, detections_record(name, image.shape, detections, ctx.banner or NO_MODEL)


def in_scheme(record: dict, scheme) -> dict:
    """``model.record.in_scheme`` for a UI value (98 or 68; empty: 98), ``gr.Error`` otherwise. The
    98-point record stays the one the tab draws from."""
    try:
        return record_in_scheme(record, int(scheme) if scheme not in (None, "") else NUM_LANDMARKS)
    except (TypeError, ValueError) as exc:
        raise gr.Error(f"Points must be 98 or 68: {exc}.", print_exception=False) from None


def predict(ctx: AppContext, image_path: str | None, min_score: float = DEFAULT_MIN_SCORE,
            min_size: float = DEFAULT_MIN_SIZE, scheme: int | str = NUM_LANDMARKS):
    """``/predict``: (annotated image as a JPEG file, JSON record as text, result state) for one image file.

    ``scheme`` 68 gives the JSON text (and the download) the 300W / iBUG subset (``in_scheme``);
    clients that do not pass it get the 98 WFLW points as before.

    Faces are in reading order. Faces of an image that belongs to the loaded WFLW annotations
    (same file name) get their ground truth drawn and an ``"nme"`` entry. When no face is found,
    or more than the predictor's ``max_faces``, the record carries a ``"warning"`` (also a pop-up).
    The state holds what ``describe`` formats: the pixels, faces, truths, drawing and record.
    """
    name, image = _read(image_path)
    limits = face_filter(ctx, min_score, min_size)
    found = (ctx.detector if ctx.predictor is None else ctx.predictor).detect(image)
    selection = select_faces(found, limits)
    detections = selected(found, selection)  # reading order
    result = {"image": name, "pixels": image, "left_out": selection.threshold_note(), "truths": None}
    if ctx.predictor is None:
        annotated, record = detector_only(ctx, name, image, detections)
        result.update(faces=None, detections=detections, note=None, nmes=[None] * len(detections))
    else:
        faces = ctx.predictor.faces_from_detections(image, detections)  # kept in that order
        note = detection_note(name, selection)
        if note:
            gr.Warning(note)
        truths, _ = match_ground_truth(faces, _wflw_truths(ctx, name))
        annotated, record, nmes = _draw_and_record(name, image, faces, truths, False, note)
        result.update(faces=faces, detections=None, note=note, nmes=nmes, truths=truths)
    shown = in_scheme(record, scheme)
    annotated = image_file(ctx, _shown_name(name), annotated)
    result.update(annotated=annotated, record=record, scheme=shown.get("scheme", NUM_LANDMARKS))
    return annotated, json.dumps(shown, indent=1), result


def _draw_and_record(name: str, image: np.ndarray, faces: list[Face], truths: list, labels: bool,
                     note: str | None) -> tuple[np.ndarray, dict, list[float | None]]:
    """(annotated image, record, per-face NME or ``None``) of faces with their matched truths."""
    has_gt = any(t is not None for t in truths)
    nmes = _nme_values(faces, truths)
    record = to_record(name, image.shape, faces, nme=nmes if has_gt else None, warning=note)
    annotated = draw_faces(image, faces, labels=labels, ground_truth=truths if has_gt else None,
                           numbers=list(range(1, len(faces) + 1)))
    return annotated, record, nmes


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


def face_order(faces: list[Face] | None, order: str | None, count: int = 0) -> list[int]:
    """Row order of the table and gallery: reading order, or the largest ``flip_error`` first
    (faces without one last). ``faces`` ``None`` (detector-only): ``count`` rows in reading order."""
    if order not in (None, READING_ORDER, LEAST_CONSISTENT):
        raise gr.Error(f"Order must be one of {', '.join(ORDERS)}; got {order!r}.", print_exception=False)
    if faces is None:
        return list(range(count))
    if order in (None, READING_ORDER):
        return list(range(len(faces)))
    return sorted(range(len(faces)), key=lambda i: -(faces[i].flip_error if faces[i].flip_error is not None else -1))


def _ranks(ctx: AppContext, nmes: list[float | None]) -> list[str]:
    """Each NME's rank among the loaded WFLW test set's faces ("3 / 2500", 1 = worst), or ""."""
    if ctx.testset is None or ctx.testset.nme is None:
        return [""] * len(nmes)
    return ["" if v is None else f"{ctx.testset.rank(v)[0]} / {len(ctx.testset)}" for v in nmes]


def _boxes(result: dict) -> tuple[np.ndarray, list[float], list[float | None]]:
    """(boxes (F, 4), scores, flip errors) of a result, with or without the 98-point model."""
    if result["faces"] is None:
        det = result["detections"]
        return det.boxes.reshape(-1, 4), [float(s) for s in det.scores], [None] * len(det)
    faces = result["faces"]
    return (np.stack([f.box for f in faces]) if faces else np.zeros((0, 4), np.float32),
            [f.score for f in faces], [f.flip_error for f in faces])


def _face_rows(result: dict, nmes: list[float | None], ranks: list[str], rows: list[int]) -> pd.DataFrame:
    boxes, scores, flips = _boxes(result)
    table = [[i + 1, f"{scores[i]:.{SCORE_DECIMALS}f}", None if flips[i] is None else round(flips[i], 2),
              None if nmes[i] is None else round(100 * nmes[i], 2), "" if nmes[i] is None else NME_BOX, ranks[i],
              *[round(float(v), 1) for v in boxes[i]]]
             for i in rows]
    return pd.DataFrame(table, columns=TABLE_COLUMNS)


def _summary(result: dict, nmes: list[float | None], ranks: list[str], unmatched: list[int]) -> str:
    h, w = result["pixels"].shape[:2]
    name, count = result["image"], len(_boxes(result)[1])
    text = f"**{counted(count, 'face')}** in {name} ({w}x{h})." if count else f"No face found in {name} ({w}x{h})."
    if result["faces"] is None and count:
        text += (" Boxes, detector scores and MTCNN's five points (eyes, nose tip, mouth corners) only: "
                 "the 98-point model is not loaded (see the banner).")
    for extra in (result["note"] if count else None, result["left_out"]):
        if extra:
            text += f" ⚠ {extra}."
    scored = [(i, v, r) for i, (v, r) in enumerate(zip(nmes, ranks), start=1) if v is not None]
    if scored:
        text += (f" Drawn: {LEGEND_TEXT}. NME uses the landmarks predicted from the "
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


def _crops(ctx: AppContext, result: dict, truths: list | None, rows: list[int]) -> list[tuple[str, str]]:
    """The gallery's zoomed faces in ``rows`` order, each cut from the photo with only its own
    points drawn (``model.draw.draw_on_crops``), as (JPEG file, caption)."""
    boxes, scores, flips = _boxes(result)
    if not rows:
        return []
    faces, detections = result["faces"], result["detections"]
    crops, matrices = crop_faces(result["pixels"], boxes[rows], size=CROP_VIEW_SIZE)
    views = draw_on_crops(crops, matrices,
                          landmarks=None if faces is None else np.stack([faces[i].landmarks for i in rows]),
                          ground_truth=None if truths is None else [truths[i] for i in rows],
                          five_points=None if detections is None else detections.points[rows])
    return [(image_file(ctx, _shown_name(result["image"], f"face{i + 1}"), view),
             f"#{i + 1} · {scores[i]:.{SCORE_DECIMALS}f}" + ("" if flips[i] is None else f" · flip {flips[i]:.1f}%"))
            for view, i in zip(views, rows)]


def _download(ctx: AppContext, name: str, record: dict) -> tuple[str, str]:
    text = json.dumps(record, indent=1)
    path = ctx.output_file(Path(name).stem + ".json")
    path.write_text(text, encoding="utf-8")
    return str(path), text


def _view(ctx: AppContext, result: dict, labels: bool, gt_line: str | None, gt_file: str | None):
    """(annotated image file, record, per-face NME, unmatched truths, per-face truths) to show: what
    ``predict`` made, or, with labels or a pasted ground truth, the kept faces drawn again (no
    decode, no model)."""
    user = _user_truths(result["image"], gt_line, gt_file)
    if result["faces"] is None or (not user and not labels):
        return result["annotated"], result["record"], result["nmes"], [], result["truths"]
    faces = result["faces"]
    truths, unmatched = match_ground_truth(faces, user) if user else (result["truths"], [])
    annotated, record, nmes = _draw_and_record(result["image"], result["pixels"], faces, truths, bool(labels),
                                               result["note"])
    return image_file(ctx, _shown_name(result["image"]), annotated), record, nmes, unmatched, truths


def describe(ctx: AppContext, image_path: str | None, result: dict | None, labels: bool, gt_line: str | None,
             gt_file: str | None, order: str | None = READING_ORDER):
    """Everything around a ``/predict`` result, formatted from its state (the upload is not read
    again): the annotated image, zoomed crops, the table, the JSON download and a summary.

    Returns:
        (annotated image file, crops [(JPEG file, caption)], table, JSON file path, summary Markdown,
        JSON text).
    """
    if not image_path:
        raise gr.Error("Upload an image first.", print_exception=False)
    if not result or result.get("image") != Path(image_path).name:
        raise gr.Error("Press Find landmarks first.", print_exception=False)
    annotated, record, nmes, unmatched, truths = _view(ctx, result, labels, gt_line, gt_file)
    if unmatched:
        gr.Warning(f"Ground truth {', '.join(f'#{j + 1}' for j in unmatched)} matched no detected face.")
    rows, ranks = face_order(result["faces"], order, len(nmes)), _ranks(ctx, nmes)
    path, text = _download(ctx, result["image"], in_scheme(record, result.get("scheme", NUM_LANDMARKS)))
    return (annotated, _crops(ctx, result, truths, rows), _face_rows(result, nmes, ranks, rows), path,
            _summary(result, nmes, ranks, unmatched), text)


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
        caption = f"{name}: {counted(len(record['faces']), 'face')}"
        gallery.append((image_file(ctx, _shown_name(name), annotated), caption))
        records.append(record)
    path = ctx.output_file("landmarks.json")
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    summary = (f"{counted(len(records), 'image')} processed, "
               f"{counted(sum(len(r['faces']) for r in records), 'face')}.")
    notes = [r["warning"] for r in records if r.get("warning") and ctx.predictor is not None]
    if notes:
        summary += "\n\n" + "\n".join(f"- {n}" for n in notes)
    if problems:
        summary += "\n\nSkipped:\n" + "\n".join(f"- {p}" for p in problems)
    return gallery, str(path), summary


def _one_of_batch(ctx: AppContext, name: str, image: np.ndarray, labels: bool) -> tuple[np.ndarray, dict]:
    """(annotated image, record) of one image of a batch, faces in reading order."""
    found = (ctx.detector if ctx.predictor is None else ctx.predictor).detect(image)
    selection = select_faces(found, face_filter(ctx, None, None))
    detections = selected(found, selection)  # reading order
    if ctx.predictor is None:
        return detector_only(ctx, name, image, detections)
    faces = ctx.predictor.faces_from_detections(image, detections)
    note = detection_note(name, selection)
    return (draw_faces(image, faces, labels=labels, numbers=list(range(1, len(faces) + 1))),
            to_record(name, image.shape, faces, warning=note))
