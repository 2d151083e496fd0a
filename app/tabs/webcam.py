"""The Webcam tab (callbacks in ``app.webcam``, the stream in ``app.live``): a canvas where the page
(``app/static/live.js``) draws each camera frame with its own landmarks. The frames go to the stream
route (``app.live``), the points come back as data (``app.webcam.frame_message``); colours and
regions come from ``app.webcam.overlay_style``."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from app import webcam
from app.context import AppContext
from app.live import LIVE_PATH
from app.serving import LIVE_MAX_IN_FLIGHT
from model.draw import LEGEND, legend_html

STATIC = Path(__file__).resolve().parents[1] / "static"
LIVE_JS = STATIC / "live.js"
LIVE_CSS = STATIC / "live.css"
ELEM_ID = "webcam-live"
# Frame size asked of the camera (unmirrored); larger frames are scaled down to fit it before they
# are sent. JPEG quality of the frames sent: about 20 kB per 640x480 frame at 0.8.
CAMERA_SIZE = (640, 480)
JPEG_QUALITY = 0.8
# What the canvas can show: the prediction's regions, face boxes, and MTCNN's five points (no model).
LEGEND_MARKS = ("dot", "box", "cross")

HTML_TEMPLATE = """
<div class="lv">
  <div class="lv-bar">
    <button type="button" class="lv-start">Start camera</button>
    <button type="button" class="lv-stop" disabled>Stop</button>
    <label class="lv-smooth-label"><input type="checkbox" class="lv-smooth" checked>
      Smooth points (One-Euro filter)</label>
  </div>
  <div class="lv-stage">
    <canvas class="lv-canvas" width="640" height="480" aria-label="Camera frames with their landmarks"></canvas>
    <div class="lv-idle"><span>Press <b>Start camera</b> and allow the camera.</span></div>
  </div>
  <div class="lv-readout" id="webcam-readout" role="status">Camera off.</div>
</div>
"""


def build(ctx: AppContext) -> None:
    """Lay out the Webcam tab; its page talks to ``app.live`` directly (no Gradio event)."""
    with gr.Tab("Webcam", id="webcam"):
        gr.Markdown(f"Press **Start camera** and allow the camera. Frames go to the server unmirrored at up to "
                    f"{CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}: the detector runs every few frames, the network on "
                    "keyframes (no flip test) and optical flow carries the points in between. Each frame is "
                    "drawn with the points found on it, at the camera's rate when the server keeps up. "
                    f"Here: {webcam.describe_mode(ctx)}.")
        with gr.Row():
            with gr.Column(scale=3, min_width=320):
                gr.HTML(None, html_template=HTML_TEMPLATE, css_template=LIVE_CSS.read_text(encoding="utf-8"),
                        js_on_load=LIVE_JS.read_text(encoding="utf-8"), elem_id=ELEM_ID,
                        stream=LIVE_PATH.lstrip("/"), style=webcam.overlay_style(),
                        camera={"width": CAMERA_SIZE[0], "height": CAMERA_SIZE[1]}, jpeg_quality=JPEG_QUALITY,
                        max_in_flight=LIVE_MAX_IN_FLIGHT)
            with gr.Column(scale=1, min_width=200):
                gr.HTML(legend_html([e for e in LEGEND if e.mark in LEGEND_MARKS]), elem_id="webcam-legend")
