"""Review tab callbacks: open a face in the point editor, verdicts, notes, point moves, navigation, exports.

Every action is written to the ``app.review_store.ReviewStore`` at once, under the reviewer's name;
reopening a face shows what that reviewer stored. Nothing can be stored before a face is open:
the face being reviewed is the ``face`` state that only ``open_face`` sets (never the index box).
"""
from __future__ import annotations

import itertools

import gradio as gr

from app.context import AppContext
from app.editor import edit_from_event, editor_value
from app.own_dataset import export_annotated, zip_annotations
from app.review_store import check_reviewer, face_key, verdicts_for
from app.stored_predictions import image_sizes, provenance
from app.wflw_faces import describe_face, face_crop
from model.formats.wflw import write_wflw_txt

# Side of the face crop sent to the editor, pixels (the SVG draws the points at display resolution).
EDITOR_VIEW_SIZE = 768
_OPENED = itertools.count()


def _ready(ctx: AppContext):
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message, print_exception=False)
    if ctx.store is None:
        raise gr.Error("No review database: start the app with --review-db FILE.", print_exception=False)
    return ctx.testset, ctx.store


def _index(ctx: AppContext, index) -> int:
    ts = ctx.testset
    if index is None or index == "":
        raise gr.Error("Choose a face: its index in the test list, or click one in the WFLW browser.",
                       print_exception=False)
    index = int(index)
    if not 0 <= index < len(ts):
        raise gr.Error(f"Face index must be in 0..{len(ts) - 1}, got {index}.", print_exception=False)
    return index


def _reviewer(reviewer: str | None) -> str:
    try:
        return check_reviewer(reviewer)
    except ValueError as exc:
        raise gr.Error(f"{str(exc)[0].upper()}{str(exc)[1:]}.", print_exception=False) from None


def progress(ctx: AppContext, reviewer: str | None = None) -> str:
    """One line: faces with a verdict by this reviewer and by anyone, of the test list."""
    if ctx.testset is None or ctx.store is None:
        return "Review needs --wflw-root (and a review database, --review-db, default review.sqlite)."
    total = len(ctx.testset)
    name = (reviewer or "").strip()
    mine = f"{name}: **{ctx.store.progress(name)} / {total}** faces reviewed · " if name else ""
    return f"{mine}all reviewers: {ctx.store.progress()} / {total}"


def open_face(ctx: AppContext, index, reviewer: str | None = None):
    """Open a face for review.

    Returns:
        (editor value, verdict, note, clear-verdict button, description, progress, index, face state).
    """
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    name = (reviewer or "").strip()
    stored = store.get(index, ts.samples[index].image, reviewer=name) if name else {
        "verdict": None, "note": "", "corrections": {}}
    view, matrix = face_crop(ctx, index, EDITOR_VIEW_SIZE)
    pred = ts.pred[index] if ts.pred is not None else None
    value = editor_value(index, view, matrix, ts.samples[index].landmarks, pred, stored["corrections"])
    value["opened"] = next(_OPENED)  # reopening the same face reloads the editor (a value Gradio sees as new)
    text = describe_face(ctx, index)
    if not name:
        text += "\n\nType your name in **Reviewer** (then Enter) to give verdicts, notes and point moves."
    editable = bool(name)
    return (value, gr.update(value=stored["verdict"], interactive=editable),
            gr.update(value=stored["note"], interactive=editable), gr.update(interactive=editable),
            text, progress(ctx, name), index, index)


def reopen(ctx: AppContext, face, reviewer: str | None):
    """The reviewer name changed: show the open face again with that reviewer's decisions."""
    if face is None or ctx.testset is None or ctx.store is None:
        return (*(gr.skip() for _ in range(5)), progress(ctx, reviewer), gr.skip(), gr.skip())
    return open_face(ctx, face, reviewer)


def _in_order(ctx: AppContext, order: list[int] | None) -> list[int]:
    """The browser's current filtered order, or the whole test list when it has none."""
    return [int(i) for i in order] if order else list(range(len(ctx.testset)))


def step(ctx: AppContext, face, delta: int, order: list[int] | None = None, reviewer: str | None = None):
    """Open the previous (-1) or next (+1) face in the browser's filtered order (worst NME first),
    or of the test list when the browser shows none. From no face, Next opens the first."""
    _ready(ctx)
    faces = _in_order(ctx, order)
    if face is None or int(face) not in faces:
        target = faces[0] if delta > 0 else faces[-1]
    else:
        target = faces[(faces.index(int(face)) + delta) % len(faces)]
    return open_face(ctx, target, reviewer)


def next_unreviewed(ctx: AppContext, face, order: list[int] | None = None, reviewer: str | None = None):
    """Open the next face in the filtered order that this reviewer has not given a verdict."""
    ts, store = _ready(ctx)
    name = _reviewer(reviewer)
    faces = _in_order(ctx, order)
    done = store.reviewed_keys(name)
    start = faces.index(int(face)) + 1 if face is not None and int(face) in faces else 0
    for k in range(len(faces)):
        candidate = faces[(start + k) % len(faces)]
        if face_key(candidate, ts.samples[candidate].image) not in done:
            return open_face(ctx, candidate, name)
    raise gr.Error(f"Every face in this order ({len(faces)}) has a verdict from {name}.", print_exception=False)


def save_verdict(ctx: AppContext, face, verdict: str | None, reviewer: str | None):
    """Store the verdict of the open face; returns the progress line."""
    ts, store = _ready(ctx)
    if face is None:
        raise gr.Error("Open a face before giving a verdict.", print_exception=False)
    index = _index(ctx, face)
    offered = verdicts_for(ts.kind)
    if verdict is not None and verdict not in offered:
        raise gr.Error(f"Verdict must be one of {', '.join(offered)}; got {verdict!r}.", print_exception=False)
    store.set_verdict(index, ts.samples[index].image, verdict, reviewer=_reviewer(reviewer))
    return progress(ctx, reviewer)


def clear_verdict(ctx: AppContext, face, reviewer: str | None):
    """Remove the open face's verdict: (verdict None, progress)."""
    return None, save_verdict(ctx, face, None, reviewer)


def save_note(ctx: AppContext, face, note: str, reviewer: str | None) -> str:
    """Store the free-text note of the open face; returns a status line."""
    ts, store = _ready(ctx)
    if face is None:
        raise gr.Error("Open a face before writing a note.", print_exception=False)
    index = _index(ctx, face)
    store.set_note(index, ts.samples[index].image, note or "", reviewer=_reviewer(reviewer))
    return f"Note saved for face {index}."


def edit_point(ctx: AppContext, face, reviewer: str | None, evt: gr.EventData):
    """An editor ``move`` or ``unmove`` event: store (or forget) one point's correction.

    Returns (status, editor value). The editor keeps its own view while a move is stored
    (``gr.skip()``); when the move is refused it is reloaded from the store, so that what it
    shows is what is stored.
    """
    ts, store = _ready(ctx)
    try:
        event_face, point, x, y = edit_from_event(getattr(evt, "_data", None))
        if face is None or event_face != int(face):
            raise ValueError(f"the edit is for face {event_face}, but the open face is {face}; nothing stored")
        name = check_reviewer(reviewer)
        image = ts.samples[event_face].image
        if x is None:
            store.clear_correction(event_face, image, point, reviewer=name)
            return f"Point {point} of face {event_face} is back at its annotated position.", gr.skip()
        store.set_correction(event_face, image, point, x, y, reviewer=name)
        return f"Point {point} of face {event_face} moved to ({x:.1f}, {y:.1f}) in image pixels.", gr.skip()
    except ValueError as exc:
        gr.Warning(f"Not stored: {exc}.")
        if face is None:
            return f"Not stored: {exc}.", None
        return f"Not stored: {exc}.", open_face(ctx, face, reviewer)[0]


def export(ctx: AppContext):
    """Paths of everything stored, by every reviewer: CSV, JSON, and the corrected annotations
    (WFLW: the corrected test list; an annotate dataset: ``export_dataset``'s zip)."""
    ts, store = _ready(ctx)
    csv_path = ctx.output_file("review.csv")
    csv_path.write_text(store.export_csv(), encoding="utf-8")
    json_path = ctx.output_file("review.json")
    json_path.write_text(store.export_json(provenance(ctx)), encoding="utf-8")
    if ts.kind == "annotate":
        return [str(csv_path), str(json_path), str(export_dataset(ctx)[1])]
    txt_path = ctx.output_file("list_98pt_rect_attr_test_corrected.txt")
    try:
        write_wflw_txt(txt_path, store.corrected_samples(ts.samples, image_sizes=image_sizes(ctx)))
    except ValueError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return [str(csv_path), str(json_path), str(txt_path)]


def export_dataset(ctx: AppContext):
    """An annotate dataset reviewed: (the new dataset folder, a zip of its annotations).

    The folder is a full dataset ROOT (``app.own_dataset.export_annotated``) that
    ``python -m training.train --wflw-root`` reads; the zip holds its lists and ``annotations.json``.
    """
    ts, store = _ready(ctx)
    folder = ctx.output_file("dataset")
    try:
        export_annotated(ts, store, folder)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return folder, zip_annotations(folder, folder.parent / "dataset-annotations")
