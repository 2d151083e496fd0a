"""The Gradio page: five tabs (Upload, Webcam, Video, WFLW browser, Review), layout and wiring only.

Callbacks live in ``app.upload``, ``app.webcam``, ``app.video``, ``app.browser`` and ``app.review``;
each takes the shared ``AppContext`` as first argument, bound here with ``bind``. Every network
forward goes through the one inference engine (``app.context``); still-image listeners share the
concurrency group ``NETWORK``, the webcam stream and video jobs have their own (``WEBCAM``,
``VIDEO``), so an upload never waits for a stream to end.
"""
from __future__ import annotations

import inspect
import logging
import typing
import warnings
from pathlib import Path

import gradio as gr

from app import browser, review, upload, video, webcam
from app.context import AppContext
from app.editor import point_editor
from app.review_store import MAX_REVIEWER_LENGTH, VERDICTS
from model.detector import FaceDetector
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# Concurrency group of every listener that runs the detector or the landmark network.
NETWORK = "network"
NETWORK_CONCURRENCY = 1

# Webcam: frame size asked of the camera, seconds between frames sent (20 frames/s, above what the
# tracker serves on 2 cores, so the camera never limits the rate), seconds per streaming session.
WEBCAM_SIZE = (640, 480)
STREAM_EVERY = 0.05
STREAM_TIME_LIMIT = 300
# Streams and video jobs have their own concurrency groups (a stream holds its slot until it stops);
# their network forwards share the inference engine (app.context) with every other caller.
WEBCAM, WEBCAM_STREAMS = "webcam", 4
VIDEO, VIDEO_JOBS = "video", 1

# Review actions (verdicts, notes, point moves) run one at a time, in the order they were sent.
REVIEW_EDITS = "review-edits"

REVIEW_HELP = ("Keys (outside text boxes): **1-4** verdict · **n** / **p** next / previous in the browser's "
               "order · **u** next unreviewed · **z** / **Shift+Z** undo / redo a move · **Esc** cancels a drag.")

CSS = """
#weights-banner {background: #fff4e5; border: 2px solid #f0a020; border-radius: 8px; padding: 4px 12px;}
#weights-banner * {color: #5a3a00 !important;}
/* Gallery captions in full ("#1 · NME 139.21% · face 7"), never cut mid-number. */
#browser-gallery .caption-label {white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; max-width: none !important; font-size: 12px;}
/* Upload: inputs and extras on the left, results on the right; on a phone one column in the order
   inputs, results, extras, so that the result follows the Run button without scrolling past the rest. */
#upload-row {display: grid !important; grid-template-columns: minmax(280px, 2fr) 5fr;
  grid-template-rows: auto 1fr; grid-template-areas: "inputs results" "extras results"; align-items: start;}
#upload-inputs {grid-area: inputs;} #upload-results {grid-area: results;} #upload-extras {grid-area: extras;}
@media (max-width: 760px) {
  #upload-row {grid-template-columns: 1fr; grid-template-rows: auto; grid-template-areas: "inputs" "results" "extras";}
  #upload-image {height: 90px !important;}
  #upload-annotated {height: auto !important; max-height: 55vh;}
}
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
    edits = dict(concurrency_id=REVIEW_EDITS, concurrency_limit=1)
    restored = browser.restore_predictions(ctx)
    if restored:
        log.info(restored)

    # CSS belongs to launch() in Gradio 6, which app.__main__ and the tests' servers call; given
    # here too (Gradio's deprecated path, used by launch() when it gets no css) so that every
    # launch of this page is styled.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The parameters have been moved from the Blocks constructor")
        blocks = gr.Blocks(title="Landmark Studio", css=CSS)
    with blocks as demo:
        demo.app_context = ctx  # for tests and the launcher (allowed_paths)
        gr.Markdown("# Landmark Studio\n98-point face landmarks (WFLW) with the DeepPose ResNet-50 "
                    "SoftWingLoss regressor.")
        if banner:
            gr.Markdown(banner, elem_id="weights-banner")

        # ---------------------------------------------------------------- 1. Upload
        with gr.Tab("Upload", id="upload"):
            # Three columns laid out by CSS (see CSS): inputs and extras on the left, results on the
            # right; on a phone inputs, results, extras one below the other, so the result comes
            # straight after the Run button.
            with gr.Row(elem_id="upload-row"):
                with gr.Column(scale=2, min_width=280, elem_id="upload-inputs"):
                    image_in = gr.File(label="Image", file_types=["image"], type="filepath", height=120,
                                       elem_id="upload-image")
                    run_btn = gr.Button("Find landmarks", variant="primary", elem_id="upload-run")
                    with gr.Row():
                        min_score_in = gr.Number(value=upload.MIN_SCORE, minimum=0, maximum=1, step=0.01,
                                                 label="Minimum face score", min_width=120, elem_id="upload-min-score",
                                                 info=f"MTCNN's own: {upload.MIN_SCORE:g}; raise it to drop false positives")
                        min_size_in = gr.Number(value=upload.MIN_FACE_SIZE, minimum=0, precision=0,
                                                label="Minimum face size (px)", min_width=120, elem_id="upload-min-size",
                                                info=f"MTCNN's own: {upload.MIN_FACE_SIZE}; shorter box side")
                with gr.Column(scale=5, elem_id="upload-results"):
                    annotated_out = gr.Image(label="Landmarks (faces numbered in reading order)", type="numpy",
                                             interactive=False, height=440, elem_id="upload-annotated")
                    summary_out = gr.Markdown(elem_id="upload-summary")
                    order_in = gr.Radio(list(upload.ORDERS), value=upload.READING_ORDER, label="Order of faces",
                                        elem_id="upload-order")
                    # Side by side: alone in the column, a single crop stretched to the full width.
                    with gr.Row():
                        crops_out = gr.Gallery(label="Faces (zoomed)", columns=3, height="auto", allow_preview=False,
                                               object_fit="contain", scale=1, min_width=220, elem_id="upload-crops")
                        table_out = gr.Dataframe(label="Faces", interactive=False, scale=2, elem_id="upload-table")
                    with gr.Accordion("JSON (CLI schema)", open=False):
                        json_out = gr.Code(label="JSON", language="json", elem_id="upload-json")
                with gr.Column(scale=2, min_width=280, elem_id="upload-extras"):
                    # In the narrow left column, not beside the crops: there the file name was cut to ".json".
                    json_file_out = gr.File(label="JSON download", height=100, elem_id="upload-json-file")
                    labels_in = gr.Checkbox(label="Show landmark indices", value=False)
                    with gr.Accordion("Ground truth (optional; applied without running the model again)",
                                      open=False, elem_id="upload-gt"):
                        gt_line_in = gr.Textbox(label=upload.GT_LINE_LABEL, lines=2, elem_id="upload-gt-line")
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
            result_state = gr.State(None)  # what /predict found: the faces that describe and redraw draw
            describe_inputs = [image_in, result_state, labels_in, gt_line_in, gt_file_in, order_in]
            upload_outputs = [annotated_out, crops_out, table_out, json_file_out, summary_out, json_out]
            run_btn.click(bind(upload.predict, ctx), inputs=[image_in, min_score_in, min_size_in],
                          outputs=[annotated_out, json_out, result_state], api_name="predict", **net).success(
                bind(upload.describe, ctx), inputs=describe_inputs, outputs=upload_outputs, api_name="describe")
            image_in.change(upload.clear_results, outputs=[*upload_outputs, result_state], api_name="clear",
                            show_progress="hidden")
            gr.on([labels_in.change, order_in.change, gt_line_in.blur, gt_file_in.change], bind(upload.redraw, ctx),
                  inputs=describe_inputs, outputs=upload_outputs, api_name="redraw", show_progress="hidden")
            batch_btn.click(bind(upload.predict_batch, ctx), inputs=[batch_in, labels_in],
                            outputs=[batch_gallery, batch_json, batch_summary], api_name="predict_batch", **net)

        # ---------------------------------------------------------------- 2. Webcam
        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown("Allow the camera, then press record. Frames are processed unmirrored at "
                        f"{WEBCAM_SIZE[0]}x{WEBCAM_SIZE[1]}: the detector runs every few frames, the network on "
                        "keyframes (no flip test) and optical flow carries the points in between.")
            with gr.Row():
                with gr.Column():
                    cam_in = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy",
                                      webcam_options=gr.WebcamOptions(
                                          mirror=False,
                                          constraints={"video": {"width": WEBCAM_SIZE[0], "height": WEBCAM_SIZE[1]}}),
                                      elem_id="webcam-in")
                    smooth_in = gr.Checkbox(label="Smooth points (One-Euro filter)", value=True)
                with gr.Column():
                    # JPEG: about 15 ms per 640x480 frame where Gradio's default WebP takes about 150 ms.
                    cam_out = gr.Image(label="Landmarks", type="numpy", interactive=False, format="jpeg",
                                       elem_id="webcam-out")
                    readout = gr.Markdown("Waiting for the camera…", elem_id="webcam-readout")
            cam_state = gr.State(webcam.new_session)
            # Its own concurrency group: a stream holds its slot until it stops, and must never make an
            # upload wait; the network itself is shared through the inference engine.
            cam_in.stream(bind(webcam.process_frame, ctx), inputs=[cam_in, smooth_in, cam_state],
                          outputs=[cam_out, readout, cam_state], api_name="webcam_frame",
                          stream_every=STREAM_EVERY, time_limit=STREAM_TIME_LIMIT, show_progress="hidden",
                          concurrency_id=WEBCAM, concurrency_limit=WEBCAM_STREAMS)
            cam_in.clear(webcam.reset_session, inputs=[cam_state], outputs=[cam_state], api_name="webcam_reset")

        # ---------------------------------------------------------------- Video
        with gr.Tab("Video", id="video"):
            gr.Markdown("Upload a video (" + ", ".join(video.VIDEO_SUFFIXES) + "): every frame gets landmarks "
                        "(the webcam's tracker, no flip test), and you get the annotated video (H.264 mp4), "
                        "a CSV of the points per face and frame, and a plot over time.")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    video_in = gr.File(label="Video", file_types=list(video.VIDEO_SUFFIXES), type="filepath",
                                       height=120, elem_id="video-in")
                    video_smooth = gr.Checkbox(label="Smooth points (One-Euro filter)", value=True)
                    video_btn = gr.Button("Annotate video", variant="primary", elem_id="video-run")
                    video_csv = gr.File(label="Landmarks CSV", height=100, elem_id="video-csv")
                    video_summary = gr.Markdown(elem_id="video-summary")
                with gr.Column(scale=2):
                    video_out = gr.Video(label="Annotated video", interactive=False, height=420, elem_id="video-out")
                    video_plot = gr.Plot(label="Faces per frame and score over time", elem_id="video-plot")
            video_btn.click(bind(video.annotate, ctx), inputs=[video_in, video_smooth],
                            outputs=[video_out, video_csv, video_plot, video_summary], api_name="annotate_video",
                            concurrency_id=VIDEO, concurrency_limit=VIDEO_JOBS)

        # ---------------------------------------------------------------- 3. WFLW browser
        with gr.Tab("WFLW browser", id="browser"):
            status_out = gr.Markdown(browser.status(ctx), elem_id="browser-status")
            with gr.Row():
                can_compute = testset is not None and predictor is not None
                compute_btn = gr.Button("Compute predictions", size="sm", scale=0, min_width=180,
                                        visible=can_compute, elem_id="browser-compute")
                cancel_btn = gr.Button("Stop", size="sm", scale=0, min_width=80, visible=can_compute,
                                       elem_id="browser-cancel")
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        subset_in = gr.Dropdown(browser.SUBSET_CHOICES, value="all", label="Subset", min_width=120)
                        nme_min_in = gr.Number(value=0.0, label="NME from (%)", minimum=0, min_width=80,
                                               elem_id="browser-nme-min")
                        # A text box: a gr.Number cannot be left empty, and "no upper bound" is the default.
                        nme_max_in = gr.Textbox(value="", label="NME to (%)", placeholder="no bound", min_width=80,
                                                elem_id="browser-nme-max")
                    count_out = gr.Markdown(elem_id="browser-count")
                    gallery_out = gr.Gallery(label="Faces, worst NME first (click to open)", columns=4,
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
            with gr.Row():
                landmark_in = gr.Number(label=f"Landmark (0..{NUM_LANDMARKS - 1}): list its worst faces", precision=0,
                                        value=None, minimum=0, maximum=NUM_LANDMARKS - 1, scale=1,
                                        elem_id="browser-landmark")
                landmark_info = gr.Markdown(elem_id="browser-landmark-info")
            landmark_tbl = gr.Dataframe(interactive=False, elem_id="browser-landmark-faces", max_height=300)
            with gr.Accordion("Compare two prediction files", open=False, elem_id="compare"):
                with gr.Row():
                    compare_a = gr.File(label="A, baseline (empty: the loaded predictions)", file_types=[".json"],
                                        type="filepath", height=100, elem_id="compare-a")
                    compare_b = gr.File(label="B, candidate", file_types=[".json"], type="filepath", height=100,
                                        elem_id="compare-b")
                    compare_btn = gr.Button("Compare", scale=0, min_width=120, elem_id="compare-run")
                compare_summary = gr.Markdown(elem_id="compare-summary")
                compare_tbl = gr.Dataframe(interactive=False, max_height=300, elem_id="compare-table")
                with gr.Row():
                    compare_view_a = gr.Image(label="A", interactive=False, height=340, elem_id="compare-view-a")
                    compare_view_b = gr.Image(label="B", interactive=False, height=340, elem_id="compare-view-b")
                compare_info = gr.Markdown(elem_id="compare-info")
            order_state = gr.State([])
            landmark_order = gr.State([])
            compare_state = gr.State(None)

        # ---------------------------------------------------------------- 4. Review
        with gr.Tab("Review", id="review"):
            with gr.Row(equal_height=True):
                reviewer_in = gr.Textbox(label="Reviewer (stored with every action; Enter to apply)",
                                         placeholder="your name", max_length=MAX_REVIEWER_LENGTH, scale=1,
                                         elem_id="review-reviewer")
                review_progress = gr.Markdown(review.progress(ctx), elem_id="review-progress")
            if testset is None:
                gr.Markdown(wflw_message)
            with gr.Row():
                with gr.Column(scale=3, min_width=320):
                    editor = point_editor(VERDICTS)
                with gr.Column(scale=2, min_width=280):
                    with gr.Row():
                        prev_btn = gr.Button("◀ Previous (p)", min_width=80, elem_id="review-previous")
                        review_index = gr.Number(label="Face index", precision=0, value=None, minimum=0,
                                                 elem_id="review-index", min_width=80)
                        next_btn = gr.Button("Next (n) ▶", min_width=80, elem_id="review-next")
                    with gr.Row():
                        open_btn = gr.Button("Open face", elem_id="review-open")
                        unreviewed_btn = gr.Button("Next unreviewed (u)", elem_id="review-next-unreviewed")
                    review_info = gr.Markdown(elem_id="review-info")
                    verdict_in = gr.Radio(list(VERDICTS), label="Verdict (keys 1-4)", interactive=False,
                                          elem_id="review-verdict")
                    clear_verdict_btn = gr.Button("Clear verdict", size="sm", interactive=False,
                                                  elem_id="review-clear-verdict")
                    note_in = gr.Textbox(label="Note (saved when you leave the box)", lines=2, interactive=False,
                                         elem_id="review-note")
                    review_status = gr.Markdown(elem_id="review-status")
                    gr.Markdown(REVIEW_HELP, elem_id="review-help")
                    export_btn = gr.Button("Export CSV, JSON and WFLW annotations", elem_id="review-export")
                    export_out = gr.File(label="Exports", file_count="multiple", height=140, elem_id="review-exports")
            face_state = gr.State(None)

        # Wiring of the browser and review tabs (the browser's gallery and tables open faces for review).
        overview_outputs = [status_out, summary_tbl, ced_out, lm_out]
        gallery_inputs = [subset_in, nme_min_in, nme_max_in]
        gallery_outputs = [gallery_out, order_state, count_out]
        review_outputs = [editor, verdict_in, note_in, clear_verdict_btn, review_info, review_progress, review_index,
                          face_state]
        face_outputs = [face_view_out, face_info, review_index]
        open_inputs = [review_index, reviewer_in]
        demo.load(bind(browser.overview, ctx), outputs=overview_outputs, api_name="overview").then(
            bind(browser.gallery, ctx), inputs=gallery_inputs, outputs=gallery_outputs, api_name="gallery")
        compute_btn.click(bind(browser.compute, ctx), outputs=overview_outputs, api_name="compute", **net).success(
            bind(browser.gallery, ctx), inputs=gallery_inputs, outputs=gallery_outputs, api_name="gallery_after_compute")
        cancel_btn.click(bind(browser.cancel_compute, ctx), api_name="cancel_compute", show_progress="hidden")
        gr.on([c.change for c in gallery_inputs], bind(browser.gallery, ctx), inputs=gallery_inputs,
              outputs=gallery_outputs, api_name="filter")
        gallery_out.select(bind(browser.open_face, ctx), inputs=[order_state], outputs=face_outputs,
                           api_name="open_face").then(
            bind(review.open_face, ctx), inputs=open_inputs, outputs=review_outputs, api_name="review_open_from_browser")
        landmark_in.change(bind(browser.landmark_faces, ctx), inputs=[landmark_in],
                           outputs=[landmark_tbl, landmark_order, landmark_info], api_name="landmark_faces")
        landmark_tbl.select(bind(browser.open_face, ctx), inputs=[landmark_order], outputs=face_outputs,
                            api_name="open_landmark_face").then(
            bind(review.open_face, ctx), inputs=open_inputs, outputs=review_outputs, api_name="review_open_from_landmark")
        compare_btn.click(bind(browser.compare, ctx), inputs=[compare_a, compare_b],
                          outputs=[compare_summary, compare_tbl, compare_state], api_name="compare")
        compare_tbl.select(bind(browser.compare_open, ctx), inputs=[compare_state],
                           outputs=[compare_view_a, compare_view_b, compare_info], api_name="compare_open")

        gr.on([open_btn.click, review_index.submit], bind(review.open_face, ctx), inputs=open_inputs,
              outputs=review_outputs, api_name="review_open")
        gr.on([reviewer_in.submit, reviewer_in.blur], bind(review.reopen, ctx), inputs=[face_state, reviewer_in],
              outputs=review_outputs, api_name="review_reviewer")
        prev_btn.click(bind(review.step, ctx), inputs=[face_state, gr.State(-1), order_state, reviewer_in],
                       outputs=review_outputs, api_name="review_previous")
        next_btn.click(bind(review.step, ctx), inputs=[face_state, gr.State(1), order_state, reviewer_in],
                       outputs=review_outputs, api_name="review_next")
        unreviewed_btn.click(bind(review.next_unreviewed, ctx), inputs=[face_state, order_state, reviewer_in],
                             outputs=review_outputs, api_name="review_next_unreviewed")
        verdict_in.input(bind(review.save_verdict, ctx), inputs=[face_state, verdict_in, reviewer_in],
                         outputs=[review_progress], api_name="review_verdict", **edits)
        clear_verdict_btn.click(bind(review.clear_verdict, ctx), inputs=[face_state, reviewer_in],
                                outputs=[verdict_in, review_progress], api_name="review_clear_verdict", **edits)
        note_in.blur(bind(review.save_note, ctx), inputs=[face_state, note_in, reviewer_in], outputs=[review_status],
                     api_name="review_note", **edits)
        # One edit at a time, in the order sent: a drag, its undo and its redo must reach the store in order.
        for event, name in ((editor.move, "review_move"), (editor.unmove, "review_unmove")):
            event(bind(review.edit_point, ctx), inputs=[face_state, reviewer_in], outputs=[review_status, editor],
                  api_name=name, show_progress="hidden", **edits)
        export_btn.click(bind(review.export, ctx), outputs=[export_out], api_name="review_export")
    return demo
