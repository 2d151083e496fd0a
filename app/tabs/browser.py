"""The WFLW browser tab (callbacks in ``app.browser``, ``app.compare``, ``app.stored_predictions``):
overview, worst-first gallery, one face large, the faces worst at one landmark, predictions computed
in the app, and the comparison of two prediction files.

Returns the handles the Review tab needs: the gallery's filtered order, and the two click events
(gallery, landmark table) that open a face, for Review to chain its own opening onto."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import browser, compare, stored_predictions
from app.context import AppContext
from app.serving import WFLW_COMPUTE, concurrency
from app.tabs import bind
from app.wflw_data import RANKINGS
from model.draw import LEGEND_TEXT
from model.layout import NUM_LANDMARKS



@dataclass
class BrowserHandles:
    """What the Review tab takes from the browser."""

    order: gr.State          # face indices in the gallery's filtered order (Review's Next / Previous)
    opened: list             # (event, api suffix) pairs: a face was opened, its index the third output
    face_index: gr.Number    # not shown: the index the open event hands on


def _controls(ctx: AppContext) -> dict:
    h = {"status": gr.Markdown(browser.status(ctx), elem_id="browser-status")}
    can_compute = ctx.testset is not None and ctx.predictor is not None
    with gr.Row():
        h["compute"] = gr.Button("Compute predictions", size="sm", scale=0, min_width=180, visible=can_compute,
                                 elem_id="browser-compute")
        h["cancel"] = gr.Button("Stop", size="sm", scale=0, min_width=80, visible=can_compute,
                                elem_id="browser-cancel")
    return h


def _gallery_and_face(ctx: AppContext) -> dict:
    h = {}
    annotated = ctx.testset is not None and ctx.testset.kind == "annotate"
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row(visible=not annotated):  # an annotate dataset has no subsets and no NME
                h["subset"] = gr.Dropdown(browser.SUBSET_CHOICES, value="all", label="Subset", min_width=120)
                h["nme_min"] = gr.Number(value=0.0, label="NME from (%)", minimum=0, min_width=80,
                                         elem_id="browser-nme-min")
                # A text box: a gr.Number cannot be left empty, and "no upper bound" is the default.
                h["nme_max"] = gr.Textbox(value="", label="NME to (%)", placeholder="no bound", min_width=80,
                                          elem_id="browser-nme-max")
            h["ranking"] = gr.Radio(list(RANKINGS), value="flip error", visible=annotated,
                                    label="Rank by (no ground truth: no NME)", elem_id="browser-ranking")
            h["count"] = gr.Markdown(elem_id="browser-count")
            h["gallery"] = gr.Gallery(label="Faces, " + ("ranked as chosen" if annotated else "worst NME first")
                                      + " (click to open)", columns=4, height=340,
                                      allow_preview=False, elem_id="browser-gallery")
        with gr.Column(scale=1):
            h["face"] = gr.Image(label=LEGEND_TEXT, interactive=False, height=340, elem_id="browser-face")
            h["face_info"] = gr.Markdown(elem_id="browser-face-info")
    return h


def _metrics_and_landmark() -> dict:
    h = {"metrics_note": gr.Markdown(elem_id="browser-metrics-note")}
    # Hidden until there are predictions (the note says what they need); the overview fills them.
    with gr.Row():
        h["summary"] = gr.Dataframe(label="Metrics", interactive=False, visible=False, elem_id="browser-summary")
    with gr.Row():
        h["ced"] = gr.Plot(label="CED curve", visible=False, elem_id="browser-ced")
        h["per_landmark"] = gr.Plot(label="Per-landmark error", visible=False, elem_id="browser-per-landmark")
    with gr.Row():
        # A text box: an empty gr.Number shows "0", which reads as a chosen landmark.
        h["landmark"] = gr.Textbox(label=f"Landmark (0..{NUM_LANDMARKS - 1}): list its worst faces (Enter)",
                                   value="", placeholder=f"a point index, 0..{NUM_LANDMARKS - 1}", max_lines=1, scale=1,
                                   elem_id="browser-landmark")
        h["landmark_info"] = gr.Markdown(browser.LANDMARK_HINT, elem_id="browser-landmark-info")
    # No columns until a landmark is chosen: an empty table with made-up headers ("1 2 3") read as data.
    h["landmark_table"] = gr.Dataframe(value=None, interactive=False, elem_id="browser-landmark-faces",
                                       max_height=300, visible=False)
    return h


def _compare(ctx: AppContext) -> dict:
    h = {}
    splits = ctx.testset.splits if ctx.testset is not None else ("test",)
    with gr.Accordion("Compare two prediction files", open=False, elem_id="compare"):
        h["split"] = gr.Radio(list(splits), value="test", label="Split: the faces compared", elem_id="compare-split",
                              info=compare.SPLIT_INFO if len(splits) > 1 else compare.SPLIT_INFO_WFLW)
        with gr.Row():
            h["a"] = gr.File(label="A, baseline (empty: the loaded predictions)", file_types=[".json"],
                             type="filepath", height=100, elem_id="compare-a")
            h["b"] = gr.File(label="B, candidate", file_types=[".json"], type="filepath", height=100,
                             elem_id="compare-b")
            h["run"] = gr.Button("Compare", scale=0, min_width=120, elem_id="compare-run")
        h["summary"] = gr.Markdown(elem_id="compare-summary")
        h["table"] = gr.Dataframe(interactive=False, max_height=300, elem_id="compare-table")
        with gr.Row():
            h["view_a"] = gr.Image(label="A", interactive=False, height=340, elem_id="compare-view-a")
            h["view_b"] = gr.Image(label="B", interactive=False, height=340, elem_id="compare-view-b")
        h["info"] = gr.Markdown(elem_id="compare-info")
    h["state"] = gr.State(None)
    return h


def _wire_overview(ctx: AppContext, demo_load, h: dict) -> None:
    overview = [h["status"], h["metrics_note"], h["summary"], h["ced"], h["per_landmark"], h["landmark_info"],
                h["landmark_table"]]
    filters = [h["subset"], h["nme_min"], h["nme_max"], h["ranking"]]
    listing = [h["gallery"], h["order"], h["count"]]
    demo_load(bind(browser.overview, ctx), outputs=overview, api_name="overview").then(
        bind(browser.gallery, ctx), inputs=filters, outputs=listing, api_name="gallery")
    h["compute"].click(bind(browser.compute, ctx), outputs=overview, api_name="compute",
                       **concurrency(WFLW_COMPUTE)).success(
        bind(browser.gallery, ctx), inputs=filters, outputs=listing, api_name="gallery_after_compute")
    h["cancel"].click(bind(stored_predictions.cancel_compute, ctx), api_name="cancel_compute", show_progress="hidden")
    gr.on([c.change for c in filters], bind(browser.gallery, ctx), inputs=filters, outputs=listing, api_name="filter")


def _wire_faces(ctx: AppContext, h: dict, c: dict) -> list:
    face_outputs = [h["face"], h["face_info"], h["face_index"]]
    from_gallery = h["gallery"].select(bind(browser.open_face, ctx), inputs=[h["order"]], outputs=face_outputs,
                                       api_name="open_face")
    gr.on([h["landmark"].submit, h["landmark"].blur], bind(browser.landmark_faces, ctx), inputs=[h["landmark"]],
          outputs=[h["landmark_table"], h["landmark_order"], h["landmark_info"]], api_name="landmark_faces")
    from_landmark = h["landmark_table"].select(bind(browser.open_face, ctx), inputs=[h["landmark_order"]],
                                               outputs=face_outputs, api_name="open_landmark_face")
    c["run"].click(bind(compare.compare, ctx), inputs=[c["a"], c["b"], c["split"]],
                   outputs=[c["summary"], c["table"], c["state"]], api_name="compare")
    c["table"].select(bind(compare.compare_open, ctx), inputs=[c["state"]], outputs=[c["view_a"], c["view_b"], c["info"]],
                      api_name="compare_open")
    return [(from_gallery, "browser"), (from_landmark, "landmark")]


def build(ctx: AppContext, demo_load) -> BrowserHandles:
    """Lay out and wire the WFLW browser tab (``demo_load``: the page's ``load`` listener, which
    fills the overview); returns what the Review tab needs."""
    with gr.Tab("WFLW browser", id="browser"):
        h = _controls(ctx)
        h.update(_gallery_and_face(ctx))
        h.update(_metrics_and_landmark())
        c = _compare(ctx)
        h.update(order=gr.State([]), landmark_order=gr.State([]),
                 face_index=gr.Number(visible=False, precision=0, elem_id="browser-face-index"))
    _wire_overview(ctx, demo_load, h)
    opened = _wire_faces(ctx, h, c)
    return BrowserHandles(order=h["order"], opened=opened, face_index=h["face_index"])
