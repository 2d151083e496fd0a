"""The Upload tab (callbacks in ``app.upload``): one image in, faces and landmarks out
(``/predict``), then ``/describe`` formats what it found; ground truth, labels and order redraw
without the network; several images at once."""
from __future__ import annotations

import gradio as gr

from app import upload
from app.context import AppContext
from app.tabs import bind, network_group
from app.thresholds import face_filter_controls
from model.draw import DISPLAY_HEIGHT
from model.layout import NUM_LANDMARKS


def _inputs() -> dict:
    """The left column: the file, the Run button, the detector thresholds."""
    h = {"image": gr.File(label="Image", file_types=["image"], type="filepath", height=120, elem_id="upload-image"),
         "run": gr.Button("Find landmarks", variant="primary", elem_id="upload-run")}
    h["min_score"], h["min_size"] = face_filter_controls("upload")
    return h


def _results() -> dict:
    """The right column: annotated image, summary, order, crops, table, JSON."""
    h = {"annotated": gr.Image(label="Faces numbered in reading order", type="filepath", interactive=False,
                               height=DISPLAY_HEIGHT, elem_id="upload-annotated", elem_classes=["ls-header-outside"]),
         "summary": gr.Markdown(elem_id="upload-summary"),
         "order": gr.Radio(list(upload.ORDERS), value=upload.READING_ORDER, label="Order of faces",
                           elem_id="upload-order")}
    # One below the other, each the column's full width: side by side, the gallery's third column and
    # the table's box columns were cut off at 1280 px. The gallery's columns are app.css's (as many
    # 150 px crops as fit).
    h["crops"] = gr.Gallery(label="Faces (zoomed)", height="auto", allow_preview=False,
                            object_fit="contain", elem_id="upload-crops", elem_classes=["ls-header-outside"])
    h["table"] = gr.Dataframe(label="Faces", interactive=False, elem_id="upload-table")
    with gr.Accordion("JSON (CLI schema)", open=False):
        h["scheme"] = gr.Radio(upload.SCHEME_CHOICES, value=NUM_LANDMARKS,
                               label="Points in the JSON (applies at the next Find landmarks)",
                               elem_id="upload-scheme")
        h["json"] = gr.Code(label="JSON", language="json", elem_id="upload-json")
    return h


def _extras(examples: list[str], image: gr.File) -> dict:
    """The lower left column: download, labels, ground truth, examples, several images."""
    # In the narrow left column, not beside the crops: there the file name was cut to ".json".
    h = {"json_file": gr.File(label="JSON download", height=100, elem_id="upload-json-file"),
         "labels": gr.Checkbox(label="Show landmark indices", value=False)}
    with gr.Accordion("Ground truth (optional; applied without running the model again)", open=False,
                      elem_id="upload-gt"):
        h["gt_line"] = gr.Textbox(label=upload.GT_LINE_LABEL, lines=2, elem_id="upload-gt-line")
        h["gt_file"] = gr.File(label="mmpose WFLW JSON", file_types=[".json"], type="filepath")
    if examples:
        gr.Examples(examples, inputs=[image], label="Example photos (assets/)", elem_id="upload-examples")
    with gr.Accordion("Several images", open=False):
        h["batch_in"] = gr.File(label="Images", file_count="multiple", file_types=["image"], type="filepath")
        h["batch_run"] = gr.Button("Run on all")
        h["batch_gallery"] = gr.Gallery(label="Annotated", columns=3, height=240)
        h["batch_json"] = gr.File(label="All results (JSON)")
        h["batch_summary"] = gr.Markdown()
    return h


def _wire(ctx: AppContext, h: dict) -> None:
    state = h["result"]
    describe_inputs = [h["image"], state, h["labels"], h["gt_line"], h["gt_file"], h["order"]]
    outputs = [h["annotated"], h["crops"], h["table"], h["json_file"], h["summary"], h["json"]]
    h["run"].click(bind(upload.predict, ctx), inputs=[h["image"], h["min_score"], h["min_size"], h["scheme"]],
                   outputs=[h["annotated"], h["json"], state], api_name="predict", **network_group()).success(
        bind(upload.describe, ctx), inputs=describe_inputs, outputs=outputs, api_name="describe")
    h["image"].change(upload.clear_results, outputs=[*outputs, state], api_name="clear", show_progress="hidden")
    gr.on([h["labels"].change, h["order"].change, h["gt_line"].blur, h["gt_file"].change], bind(upload.redraw, ctx),
          inputs=describe_inputs, outputs=outputs, api_name="redraw", show_progress="hidden")
    h["batch_run"].click(bind(upload.predict_batch, ctx), inputs=[h["batch_in"], h["labels"]],
                         outputs=[h["batch_gallery"], h["batch_json"], h["batch_summary"]], api_name="predict_batch",
                         **network_group())


def build(ctx: AppContext, examples: list[str]) -> None:
    """Lay out and wire the Upload tab; no other tab needs its handles."""
    with gr.Tab("Upload", id="upload"):
        # Three columns laid out by CSS (app/static/app.css): inputs and extras on the left, results
        # on the right; on a phone inputs, results, extras one below the other.
        with gr.Row(elem_id="upload-row"):
            with gr.Column(scale=2, min_width=280, elem_id="upload-inputs"):
                h = _inputs()
            with gr.Column(scale=5, elem_id="upload-results"):
                h.update(_results())
            with gr.Column(scale=2, min_width=280, elem_id="upload-extras"):
                h.update(_extras(examples, h["image"]))
        h["result"] = gr.State(None)  # what /predict found: describe formats it, redraw draws it again
        _wire(ctx, h)
