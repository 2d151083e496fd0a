"""Review tab callbacks: verdict, note and point corrections of the face in view, and exports.

Every action is written to the ``app.review_store.ReviewStore`` at once; reopening a face shows
what was stored.
"""
from __future__ import annotations

import gradio as gr

from app import browser
from app.context import AppContext
from app.review_store import VERDICTS
from model.geometry import apply_affine, invert_affine
from model.layout import NUM_LANDMARKS


def _ready(ctx: AppContext):
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message)
    if ctx.store is None:
        raise gr.Error("No review database: start the app with --review-db FILE.")
    return ctx.testset, ctx.store


def _index(ctx: AppContext, index) -> int:
    ts = ctx.testset
    if index is None:
        raise gr.Error("Choose a face (its index in the test list, or click one in the WFLW browser).")
    index = int(index)
    if not 0 <= index < len(ts):
        raise gr.Error(f"face index must be in 0..{len(ts) - 1}, got {index}")
    return index


def progress(ctx: AppContext) -> str:
    if ctx.testset is None or ctx.store is None:
        return "Review needs `--wflw-root` (and a review database, `--review-db`, default `review.sqlite`)."
    return f"Reviewed **{ctx.store.progress()} / {len(ctx.testset)}** faces"


def open_face(ctx: AppContext, index, labels: bool = False):
    """(view, verdict, note, description, progress, index) of a face, with what is stored for it."""
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    stored = store.get(index, ts.samples[index].image)
    view, _ = browser.face_view(ctx, index, corrections=stored["corrections"], labels=labels)
    text = browser.describe_face(ctx, index)
    if stored["corrections"]:
        text += "\n\nCorrected points: " + ", ".join(
            f"{p} → ({x:.1f}, {y:.1f})" for p, (x, y) in stored["corrections"].items())
    return view, stored["verdict"], stored["note"], text, progress(ctx), index


def step(ctx: AppContext, index, delta: int, labels: bool = False):
    """Open the previous (-1) or next (+1) face of the test list."""
    ts, _ = _ready(ctx)
    index = 0 if index is None else (int(index) + delta) % len(ts)
    return open_face(ctx, index, labels)


def save_verdict(ctx: AppContext, index, verdict: str | None) -> str:
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    if verdict is not None and verdict not in VERDICTS:
        raise gr.Error(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    store.set_verdict(index, ts.samples[index].image, verdict)
    return progress(ctx)


def save_note(ctx: AppContext, index, note: str) -> str:
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    store.set_note(index, ts.samples[index].image, note or "")
    return f"Note saved for face {index}."


def correct_point(ctx: AppContext, index, point, labels: bool, evt: gr.SelectData):
    """A click on the face view: the true position of landmark ``point``; returns the refreshed
    (view, description, status)."""
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    if point is None or not 0 <= int(point) < NUM_LANDMARKS:
        raise gr.Error(f"Choose the landmark index to correct (0..{NUM_LANDMARKS - 1}) before clicking.")
    _, matrix = browser.face_view(ctx, index)
    x, y = apply_affine([float(evt.index[0]), float(evt.index[1])], invert_affine(matrix))
    try:
        store.set_correction(index, ts.samples[index].image, int(point), float(x), float(y))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    view, _, _, text, _, _ = open_face(ctx, index, labels)
    return view, text, f"Point {int(point)} of face {index} moved to ({x:.1f}, {y:.1f}) in image pixels."


def export(ctx: AppContext):
    """(CSV, JSON, WFLW annotation file) paths of everything stored."""
    ts, store = _ready(ctx)
    csv_path = ctx.output_file("review.csv")
    csv_path.write_text(store.export_csv(), encoding="utf-8")
    json_path = ctx.output_file("review.json")
    json_path.write_text(store.export_json(), encoding="utf-8")
    txt_path = ctx.output_file("list_98pt_rect_attr_test_corrected.txt")
    try:
        txt_path.write_text(store.export_wflw(ts.samples), encoding="utf-8")
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    return [str(csv_path), str(json_path), str(txt_path)]
