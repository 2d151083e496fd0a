"""The Webcam tab: the browser camera streamed to ``app.webcam.process_frame`` (tracker, engine,
smoothing), the annotated frame and a timing readout back."""
from __future__ import annotations

import gradio as gr

from app import webcam
from app.context import AppContext
from app.tabs import bind

# Frame size asked of the camera, seconds between frames sent (20 frames/s, above what the
# tracker serves on 2 cores, so the camera never limits the rate), seconds per streaming session.
WEBCAM_SIZE = (640, 480)
STREAM_EVERY = 0.05
STREAM_TIME_LIMIT = 300
# Streams have their own concurrency group (a stream holds its slot until it stops, and must never
# make an upload wait); their network forwards share the inference engine (app.context).
WEBCAM, WEBCAM_STREAMS = "webcam", 4


def build(ctx: AppContext) -> None:
    """Lay out and wire the Webcam tab; no other tab needs its handles."""
    with gr.Tab("Webcam", id="webcam"):
        gr.Markdown("Allow the camera, then press record. Frames are processed unmirrored at "
                    f"{WEBCAM_SIZE[0]}x{WEBCAM_SIZE[1]}: the detector runs every few frames, the network on "
                    "keyframes (no flip test) and optical flow carries the points in between.")
        with gr.Row():
            with gr.Column():
                camera = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy",
                                  webcam_options=gr.WebcamOptions(
                                      mirror=False,
                                      constraints={"video": {"width": WEBCAM_SIZE[0], "height": WEBCAM_SIZE[1]}}),
                                  elem_id="webcam-in")
                smooth = gr.Checkbox(label="Smooth points (One-Euro filter)", value=True)
            with gr.Column():
                # JPEG: about 15 ms per 640x480 frame where Gradio's default WebP takes about 150 ms.
                out = gr.Image(label="Landmarks", type="numpy", interactive=False, format="jpeg", elem_id="webcam-out")
                readout = gr.Markdown("Waiting for the camera…", elem_id="webcam-readout")
        state = gr.State(webcam.new_session)
        camera.stream(bind(webcam.process_frame, ctx), inputs=[camera, smooth, state], outputs=[out, readout, state],
                      api_name="webcam_frame", stream_every=STREAM_EVERY, time_limit=STREAM_TIME_LIMIT,
                      show_progress="hidden", concurrency_id=WEBCAM, concurrency_limit=WEBCAM_STREAMS)
        camera.clear(webcam.reset_session, inputs=[state], outputs=[state], api_name="webcam_reset")
