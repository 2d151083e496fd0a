"""Webcam tab callbacks: landmarks on streamed camera frames, timing readout, optional smoothing.

Per browser session a small state dict keeps the ``model.tracking.FaceTracker`` (crops from the
previous frame's landmarks, re-detection every few frames or when the face is lost), the point
smoother and the recent frame times.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from app.context import AppContext
from model.draw import draw_box, draw_faces, draw_five_points
from model.image import check_image_array

try:  # written by the speed engineer; until it exists every frame runs the full pipeline
    from model.tracking import FaceTracker
except ImportError:  # pragma: no cover - depends on the work in progress
    FaceTracker = None

try:
    from model.smoothing import OneEuroFilter
except ImportError:  # pragma: no cover
    OneEuroFilter = None

# Re-run the detector at least this often (frames), as well as whenever the face is lost.
REDETECT_EVERY = 10
# Frames per second are averaged over this many recent frames.
FPS_WINDOW = 20

SMOOTHING_AVAILABLE = OneEuroFilter is not None


def new_session() -> dict:
    """Fresh per-session state (tracker and smoother are created on the first frame)."""
    return {"tracker": None, "smoother": None, "stamps": deque(maxlen=FPS_WINDOW)}


def _tracker(ctx: AppContext, state: dict):
    if state["tracker"] is None and FaceTracker is not None:
        state["tracker"] = FaceTracker(ctx.predictor, redetect_every=REDETECT_EVERY)
    return state["tracker"]


def _smooth(state: dict, faces, now: float):
    """One-Euro filter on the points of the first face (reset when no face is seen)."""
    if not faces:
        state["smoother"] = None
        return faces
    if state["smoother"] is None:
        state["smoother"] = OneEuroFilter()
    faces[0].landmarks = np.asarray(state["smoother"](faces[0].landmarks, now), dtype=np.float32)
    return faces


def process_frame(ctx: AppContext, frame: np.ndarray | None, smoothing: bool, state: dict | None):
    """One streamed frame -> (annotated frame, readout Markdown, state)."""
    state = state or new_session()
    if frame is None:
        return None, "Waiting for the camera…", state
    frame = check_image_array(np.asarray(frame), "frame")
    start = time.perf_counter()
    if ctx.predictor is None:
        det = ctx.detector.detect(frame)
        out = frame
        for box, score in zip(det.boxes, det.scores):
            out = draw_box(out, box, float(score))
        out = draw_five_points(out, det.points)
        count, mode = len(det), "detector only (no 98-point model)"
    else:
        tracker = _tracker(ctx, state)
        faces = tracker.update(frame) if tracker is not None else ctx.predictor.predict(frame)
        if smoothing and SMOOTHING_AVAILABLE:
            faces = _smooth(state, faces, time.monotonic())
        out = draw_faces(frame, faces)
        count, mode = len(faces), "tracking" if tracker is not None else "detect every frame"
    elapsed_ms = 1000.0 * (time.perf_counter() - start)
    stamps = state["stamps"]
    stamps.append(time.monotonic())
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    h, w = frame.shape[:2]
    readout = (f"**{elapsed_ms:.0f} ms** per frame · **{fps:.1f}** frames/s · {count} face(s) · "
               f"{w}x{h} · {mode}" + (" · smoothed" if smoothing and SMOOTHING_AVAILABLE else ""))
    return out, readout, state


def reset_session(state: dict | None) -> dict:
    """Forget the tracked face and the smoother (the stream stopped or restarted)."""
    return new_session()
