"""The Gradio page: four tabs (Upload, Webcam, WFLW browser, Review), layout and wiring only.

Callbacks live in ``app.upload``, ``app.webcam``, ``app.browser`` and ``app.review``; each takes the
shared ``AppContext`` as first argument, bound here with ``bind``. Listeners that run the network
share the concurrency group ``NETWORK`` (one at a time by default: the model is one shared object).
"""
from __future__ import annotations

import inspect
import typing
from pathlib import Path

import gradio as gr

from app import browser, review, upload, webcam
from app.context import AppContext
from app.review_store import VERDICTS
from model.detector import FaceDetector
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# Concurrency group of every listener that runs the detector or the landmark network.
NETWORK = "network"
NETWORK_CONCURRENCY = 1

# Webcam: frame size asked of the camera, seconds between frames sent, seconds per streaming session.
WEBCAM_SIZE = (640, 480)
STREAM_EVERY = 0.1
STREAM_TIME_LIMIT = 300

CSS = """
#weights-banner {background: #fff4e5; border: 2px solid #f0a020; border-radius: 8px; padding: 4px 12px;}
#weights-banner * {color: #5a3a00 !important;}
"""


def bind(fn, ctx: AppContext):
    """``fn`` with ``ctx`` as its first argument, keeping the rest of its signature and type hints
    (Gradio reads them to pass ``gr.SelectData`` and ``gr.Progress``; ``functools.partial`` hides them)."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)

    def bound(*args, **kwargs):
        return fn(ctx, *args, **kwargs)

    bound.__name__ = fn.__name__
    bound.__qualname__ = fn.__qualname__
    bound.__doc__ = fn.__doc__
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__annotations__ = {k: v for k, v in hints.items() if k != "ctx"}
    return bound


def example_images() -> list[str]:
    """Example photos shipped under ``assets/``."""
    if not ASSETS.is_dir():
        return []
    return sorted(str(p) for p in ASSETS.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def build_demo(predictor: Predictor | None, *, detector: FaceDetector | None = None, banner: str | None = None,
               testset=None, wflw_message: str = "", store=None) -> gr.Blocks:
    """The app's page.

    Args:
        predictor: the loaded 98-point model, or ``None`` (detector-only mode; ``banner`` says why).
        detector: face detector for detector-only mode (default: the predictor's, else a new MTCNN).
        banner: Markdown shown on top of every tab (e.g. how to supply missing weights).
        testset: ``app.wflw_data.WFLWTestSet`` for the browser and review tabs, or ``None``.
        wflw_message: shown in those tabs when ``testset`` is ``None``.
        store: ``app.review_store.ReviewStore`` for the review tab.
    """
    if detector is None:
        detector = predictor.detector if predictor is not None else FaceDetector()
    ctx = AppContext(predictor=predictor, detector=detector, banner=banner, testset=testset,
                     wflw_message=wflw_message, store=store)
    net = dict(concurrency_id=NETWORK, concurrency_limit=NETWORK_CONCURRENCY)

    with gr.Blocks(title="Landmark Studio") as demo:
        demo.app_context = ctx  # for tests and the launcher (allowed_paths)
        gr.Markdown("# Landmark Studio\n98-point face landmarks (WFLW) with the DeepPose ResNet-50 "
                    "SoftWingLoss regressor.")
        if banner:
            gr.Markdown(banner, elem_id="weights-banner")

        # ---------------------------------------------------------------- 1. Upload
        with gr.Tab("Upload", id="upload"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    image_in = gr.File(label="Image", file_types=["image"], type="filepath", height=120,
                                       elem_id="upload-image")
                    run_btn = gr.Button("Find landmarks", variant="primary", elem_id="upload-run")
                    # In the narrow left column, not beside the crops: there the file name was cut to ".json".
                    json_file_out = gr.File(label="JSON download", height=100, elem_id="upload-json-file")
                    labels_in = gr.Checkbox(label="Show landmark indices", value=False)
                    with gr.Accordion("Ground truth (optional)", open=False):
                        gt_line_in = gr.Textbox(label="WFLW annotation line (207 or 197 fields)", lines=2)
                        gt_file_in = gr.File(label="mmpose WFLW JSON", file_types=[".json"], type="filepath")
                    if example_images():
                        gr.Examples(example_images(), inputs=[image_in], label="Example photos (assets/)",
                                    elem_id="upload-examples")
                    with gr.Accordion("Several images", open=False):
                        batch_in = gr.File(label="Images", file_count="multiple", file_types=["image"],
                                           type="filepath")
                        batch_btn = gr.Button("Run on all")
                        batch_gallery = gr.Gallery(label="Annotated", columns=3, height=240)
                        batch_json = gr.File(label="All results (JSON)")
                        batch_summary = gr.Markdown()
                with gr.Column(scale=5):
                    annotated_out = gr.Image(label="Landmarks", type="numpy", interactive=False, height=440,
                                             elem_id="upload-annotated")
                    summary_out = gr.Markdown(elem_id="upload-summary")
                    # Side by side: alone in the column, a single crop stretched to the full width.
                    with gr.Row():
                        crops_out = gr.Gallery(label="Faces (zoomed)", columns=3, height=240, allow_preview=False,
                                               object_fit="contain", scale=1, min_width=220, elem_id="upload-crops")
                        table_out = gr.Dataframe(label="Faces", interactive=False, scale=2, elem_id="upload-table")
                    with gr.Accordion("JSON (CLI schema)", open=False):
                        json_out = gr.Code(label="JSON", language="json", elem_id="upload-json")
            describe_inputs = [image_in, labels_in, gt_line_in, gt_file_in, json_out]
            upload_outputs = [annotated_out, crops_out, table_out, json_file_out, summary_out, json_out]
            run_btn.click(bind(upload.predict, ctx), inputs=[image_in], outputs=[annotated_out, json_out],
                          api_name="predict", **net).success(
                bind(upload.describe, ctx), inputs=describe_inputs, outputs=upload_outputs, api_name="describe")
            image_in.change(upload.clear_results, outputs=upload_outputs, api_name="clear", show_progress="hidden")
            labels_in.change(bind(upload.redraw, ctx), inputs=describe_inputs, outputs=upload_outputs,
                             api_name="redraw", show_progress="hidden")
            batch_btn.click(bind(upload.predict_batch, ctx), inputs=[batch_in, labels_in],
                            outputs=[batch_gallery, batch_json, batch_summary], api_name="predict_batch", **net)

        # ---------------------------------------------------------------- 2. Webcam
        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown("Allow the camera, then press record. Frames are processed unmirrored at "
                        f"{WEBCAM_SIZE[0]}x{WEBCAM_SIZE[1]}; between detections the face is tracked from the "
                        "previous frame's landmarks.")
            with gr.Row():
                with gr.Column():
                    cam_in = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy",
                                      webcam_options=gr.WebcamOptions(
                                          mirror=False,
                                          constraints={"video": {"width": WEBCAM_SIZE[0], "height": WEBCAM_SIZE[1]}}),
                                      elem_id="webcam-in")
                    smooth_in = gr.Checkbox(label="Smooth points (One-Euro filter)", value=True,
                                            interactive=webcam.SMOOTHING_AVAILABLE)
                with gr.Column():
                    cam_out = gr.Image(label="Landmarks", type="numpy", interactive=False, elem_id="webcam-out")
                    readout = gr.Markdown("Waiting for the camera…", elem_id="webcam-readout")
            cam_state = gr.State(webcam.new_session)
            cam_in.stream(bind(webcam.process_frame, ctx), inputs=[cam_in, smooth_in, cam_state],
                          outputs=[cam_out, readout, cam_state], api_name="webcam_frame",
                          stream_every=STREAM_EVERY, time_limit=STREAM_TIME_LIMIT, show_progress="hidden", **net)
            cam_in.clear(webcam.reset_session, inputs=[cam_state], outputs=[cam_state], api_name="webcam_reset")

        # ---------------------------------------------------------------- 3. WFLW browser
        with gr.Tab("WFLW browser", id="browser"):
            with gr.Row():
                status_out = gr.Markdown(browser.status(ctx), elem_id="browser-status")
                compute_btn = gr.Button("Compute predictions", size="sm", scale=0, min_width=180,
                                        visible=testset is not None and predictor is not None,
                                        elem_id="browser-compute")
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        subset_in = gr.Dropdown(browser.SUBSET_CHOICES, value="all", label="Subset", min_width=120)
                        nme_min_in = gr.Number(value=0.0, label="NME from (%)", minimum=0, min_width=80)
                        nme_max_in = gr.Number(value=100.0, label="NME to (%)", minimum=0, min_width=80)
                    count_out = gr.Markdown(elem_id="browser-count")
                    gallery_out = gr.Gallery(label="Faces, worst NME first (click to open)", columns=5,
                                             height=340, allow_preview=False, elem_id="browser-gallery")
                with gr.Column(scale=1):
                    face_view_out = gr.Image(label="Ground truth (green) · prediction · error (magenta)",
                                             interactive=False, height=340, elem_id="browser-face")
                    face_info = gr.Markdown(elem_id="browser-face-info")
            with gr.Row():
                summary_tbl = gr.Dataframe(label="WFLW test metrics (full set and the six subsets)",
                                           interactive=False, elem_id="browser-summary")
            with gr.Row():
                ced_out = gr.Plot(label="CED curve")
                lm_out = gr.Plot(label="Per-landmark error")
            order_state = gr.State([])

        # ---------------------------------------------------------------- 4. Review
        with gr.Tab("Review", id="review"):
            review_progress = gr.Markdown(review.progress(ctx), elem_id="review-progress")
            if testset is None:
                gr.Markdown(wflw_message)
            with gr.Row():
                with gr.Column(scale=3):
                    review_view = gr.Image(label="Click the true position of the selected landmark",
                                           interactive=False, height=480, elem_id="review-image")
                with gr.Column(scale=2):
                    with gr.Row():
                        prev_btn = gr.Button("◀ Previous", min_width=80)
                        review_index = gr.Number(label="Face index", precision=0, value=None, minimum=0,
                                                 elem_id="review-index", min_width=80)
                        next_btn = gr.Button("Next ▶", min_width=80)
                    open_btn = gr.Button("Open face", elem_id="review-open")
                    review_info = gr.Markdown(elem_id="review-info")
                    verdict_in = gr.Radio(list(VERDICTS), label="Verdict", elem_id="review-verdict")
                    note_in = gr.Textbox(label="Note (saved when you leave the box)", lines=2,
                                         elem_id="review-note")
                    point_in = gr.Number(label=f"Landmark to correct (0..{NUM_LANDMARKS - 1})", precision=0,
                                         value=None, minimum=0, maximum=NUM_LANDMARKS - 1, elem_id="review-point")
                    labels_review = gr.Checkbox(label="Show landmark indices", value=False)
                    review_status = gr.Markdown(elem_id="review-status")
                    export_btn = gr.Button("Export CSV, JSON and WFLW annotations", elem_id="review-export")
                    export_out = gr.File(label="Exports", file_count="multiple", height=140, elem_id="review-exports")

        # Wiring of the browser and review tabs (the browser's gallery opens faces for review).
        overview_outputs = [status_out, summary_tbl, ced_out, lm_out]
        gallery_inputs = [subset_in, nme_min_in, nme_max_in]
        gallery_outputs = [gallery_out, order_state, count_out]
        review_outputs = [review_view, verdict_in, note_in, review_info, review_progress, review_index]
        demo.load(bind(browser.overview, ctx), outputs=overview_outputs, api_name="overview").then(
            bind(browser.gallery, ctx), inputs=gallery_inputs, outputs=gallery_outputs, api_name="gallery")
        compute_btn.click(bind(browser.compute, ctx), outputs=overview_outputs, api_name="compute", **net).success(
            bind(browser.gallery, ctx), inputs=gallery_inputs, outputs=gallery_outputs, api_name="gallery_after_compute")
        gr.on([c.change for c in gallery_inputs], bind(browser.gallery, ctx), inputs=gallery_inputs,
              outputs=gallery_outputs, api_name="filter")
        gallery_out.select(bind(browser.open_face, ctx), inputs=[order_state],
                           outputs=[face_view_out, face_info, review_index], api_name="open_face").then(
            bind(review.open_face, ctx), inputs=[review_index, labels_review], outputs=review_outputs,
            api_name="review_open_from_browser")
        open_btn.click(bind(review.open_face, ctx), inputs=[review_index, labels_review], outputs=review_outputs,
                       api_name="review_open")
        labels_review.change(bind(review.open_face, ctx), inputs=[review_index, labels_review],
                             outputs=review_outputs, api_name="review_labels")
        prev_btn.click(bind(review.step, ctx), inputs=[review_index, gr.State(-1), labels_review],
                       outputs=review_outputs, api_name="review_previous")
        next_btn.click(bind(review.step, ctx), inputs=[review_index, gr.State(1), labels_review],
                       outputs=review_outputs, api_name="review_next")
        verdict_in.input(bind(review.save_verdict, ctx), inputs=[review_index, verdict_in],
                         outputs=[review_progress], api_name="review_verdict")
        note_in.blur(bind(review.save_note, ctx), inputs=[review_index, note_in], outputs=[review_status],
                     api_name="review_note")
        review_view.select(bind(review.correct_point, ctx), inputs=[review_index, point_in, labels_review],
                           outputs=[review_view, review_info, review_status], api_name="review_correct")
        export_btn.click(bind(review.export, ctx), outputs=[export_out], api_name="review_export")
    return demo
