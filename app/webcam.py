"""Webcam tab callbacks: landmarks on streamed camera frames, timing readout, optional smoothing.

Per browser session a small state dict keeps the ``model.tracking.FaceTracker`` (detector every
few frames, network on keyframes, optical flow in between), the ``model.smoothing.FaceSmoother``
(which returns new faces: the tracker never sees smoothed points) and the recent frame times.
The network runs without flip test (one forward per keyframe) through the app's inference engine,
in the live class under a latest-wins slot per session (``AppContext.stream_predictor``): a frame
that a newer one of the same session replaced while it waited is skipped, not shown late. Uploads
and the stream take turns per forward in the engine (``app.serving``); the stream never waits for
an upload as a whole.
"""
from __future__ import annotations

import itertools
import time
from collections import deque

import gradio as gr
import numpy as np

from app.context import AppContext
from model.draw import draw_box, draw_faces, draw_five_points
from model.engine import FrameDropped
from model.image import check_image_array
from model.smoothing import FaceSmoother
from model.tracking import FaceTracker

# Frames per second are averaged over this many recent frames.
FPS_WINDOW = 20

_session_ids = itertools.count()


def new_session() -> dict:
    """Fresh per-session state (the tracker is created on the first frame)."""
    return {"tracker": None, "smoother": FaceSmoother(), "stamps": deque(maxlen=FPS_WINDOW),
            "slot": f"webcam-{next(_session_ids)}"}


def _tracker(ctx: AppContext, state: dict) -> FaceTracker:
    if state["tracker"] is None:
        state["tracker"] = FaceTracker(ctx.stream_predictor(state["slot"]))
    return state["tracker"]


def _draw_detections(frame: np.ndarray, ctx: AppContext) -> tuple[np.ndarray, int]:
    det = ctx.detector.detect(frame)
    out = frame
    for box, score in zip(det.boxes, det.scores):
        out = draw_box(out, box, float(score))
    return draw_five_points(out, det.points), len(det)


def process_frame(ctx: AppContext, frame: np.ndarray | None, smoothing: bool, state: dict | None):
    """One streamed frame -> (annotated frame, readout Markdown, state)."""
    state = state or new_session()
    if frame is None:
        return None, "Waiting for the camera…", state
    try:
        frame = check_image_array(np.asarray(frame), "camera frame")
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    start = time.perf_counter()
    if ctx.predictor is None:
        out, count = _draw_detections(frame, ctx)
        mode = "detector only (no 98-point model)"
    else:
        tracker = _tracker(ctx, state)
        try:
            faces = tracker.update(frame)
        except FrameDropped:
            return gr.skip(), gr.skip(), state  # a newer frame of this stream is on its way
        if smoothing:
            faces = state["smoother"](faces, time.monotonic())
        else:
            state["smoother"].reset()
        out = draw_faces(frame, faces)
        count = len(faces)
        mode = (f"tracking: detector every {tracker.redetect_every} frames, network every "
                f"{tracker.keyframe_every}, optical flow between")
    elapsed_ms = 1000.0 * (time.perf_counter() - start)
    stamps = state["stamps"]
    stamps.append(time.monotonic())
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    h, w = frame.shape[:2]
    readout = (f"**{elapsed_ms:.0f} ms** per frame · **{fps:.1f}** frames/s · {count} face(s) · "
               f"{w}x{h} · {mode}" + (" · smoothed" if smoothing else ""))
    return out, readout, state


def reset_session(state: dict | None) -> dict:
    """Forget the tracked faces and the smoother (the stream stopped or restarted)."""
    return new_session()
