"""Webcam tab callbacks (``app.tabs.webcam`` lays the tab out, ``app.live`` serves the stream): what
happens to one camera frame of a browser session, and what goes back.

The tab's page (``app/static/live.js``) sends each camera frame to the stream route (``app.live``),
keeps it, and draws it with the answer to that very frame; this module computes the answer:

- ``track_frame``: the session's ``model.tracking.FaceTracker`` (detector every few frames,
  network on keyframes, optical flow in between) and, when asked, the ``model.smoothing.FaceSmoother``
  (which returns new faces: the tracker never sees smoothed points). Without a model: the
  detector's boxes and five points on every frame.
- ``frame_message``: the answer as data, the JSON record of ``/predict`` and the CLI
  (``model.record``) plus the overlay's sizes and label places (``model.draw``), so that the
  browser draws what the server-side drawing would.
- ``overlay_style``: the colours and the region scheme the browser draws with (``model.draw``,
  ``model.layout``), handed to the page once.

The network runs without flip test (one forward per keyframe) through the app's inference engine,
in the live class under a latest-wins slot per session (``AppContext.stream_predictor``).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from app.context import AppContext
from model.detector import Detections
from model.draw import (BOX_COLOR, LABEL_BACK_COLOR, MTCNN_COLOR, OUTLINE_COLOR, css_hex, drawing_scale, five_point_size, label_segments, landmark_radius, layout_labels)
from model.image import check_image_array
from model.layout import REGION_COLORS, REGIONS
from model.pipeline import Face
from model.record import detections_record, to_record
from model.smoothing import FaceSmoother
from model.tracking import DEFAULT_KEYFRAME_EVERY, DEFAULT_REDETECT_EVERY, FaceTracker

DETECTOR_ONLY = "detector only (no 98-point model)"

_session_ids = itertools.count()


def new_session() -> dict:
    """Fresh per-session state (the tracker is created on the first frame)."""
    return {"tracker": None, "smoother": FaceSmoother(), "slot": f"webcam-{next(_session_ids)}"}


def describe_mode(ctx: AppContext) -> str:
    """What runs on each frame, for the readout."""
    if ctx.predictor is None:
        return DETECTOR_ONLY
    return (f"tracking: detector every {DEFAULT_REDETECT_EVERY} frames, network every "
            f"{DEFAULT_KEYFRAME_EVERY}, optical flow between")


@dataclass(frozen=True)
class LiveFrame:
    """What one frame gave.

    Attributes:
        faces: the tracked faces (98 landmarks, ``face_id`` set; smoothed when asked); empty
            without a model.
        detections: without a model, the detector's boxes, scores and five points; else ``None``.
        shape: (H, W) of the frame.
        track_ms: milliseconds spent on the frame (tracker or detector, smoothing).
    """

    faces: list[Face]
    detections: Detections | None
    shape: tuple[int, int]
    track_ms: float


def track_frame(ctx: AppContext, frame: np.ndarray, smoothing: bool, state: dict) -> LiveFrame:
    """One camera frame of a session through its tracker (or the detector without a model).

    Args:
        frame: (H, W, 3) uint8 RGB, unmirrored.
        smoothing: One-Euro smoothing of the points shown (the tracker keeps its raw points).
        state: the session's ``new_session()`` dict, updated in place.

    Raises ``model.engine.FrameDropped`` when a newer frame of the session took this one's place
    in the engine (the tracker is left as it was).
    """
    frame = check_image_array(frame, "camera frame")
    start = time.perf_counter()
    if ctx.predictor is None:
        return LiveFrame([], ctx.detector.detect(frame), frame.shape[:2], 1000.0 * (time.perf_counter() - start))
    if state["tracker"] is None:
        state["tracker"] = FaceTracker(ctx.stream_predictor(state["slot"]))
    faces = state["tracker"].update(frame)
    if smoothing:
        faces = state["smoother"](faces, time.monotonic())
    else:
        state["smoother"].reset()
    return LiveFrame(faces, None, frame.shape[:2], 1000.0 * (time.perf_counter() - start))


def _boxes_scores(live: LiveFrame) -> tuple[np.ndarray, list[float], list[int | None]]:
    if live.detections is not None:
        return live.detections.boxes, [float(s) for s in live.detections.scores], [None] * len(live.detections)
    return (np.array([f.box for f in live.faces]).reshape(-1, 4), [f.score for f in live.faces],
            [f.face_id for f in live.faces])


def overlay(live: LiveFrame) -> dict:
    """How to draw ``live`` on its frame, as ``model.draw`` would: line and text sizes for the frame
    size, per face the dot radius (or the five-point cross size) and its placed label (the face
    id in a badge, then the score), ``None`` where no label fits."""
    scale = drawing_scale(live.shape)
    boxes, scores, ids = _boxes_scores(live)
    placed = layout_labels(live.shape, boxes, [label_segments(i, s) for i, s in zip(ids, scores)], scale,
                           numbered=live.detections is None)
    if live.detections is None:
        sizes = [round(landmark_radius(f.landmarks, live.shape), 2) for f in live.faces]
    else:
        sizes = [five_point_size(p, live.shape, scale) for p in live.detections.points]
    return {"line": scale.line, "text_px": scale.text_px, "pad": scale.pad, "marker_line": scale.marker_line,
            "sizes": sizes, "numbered": live.detections is None,
            "labels": [None if p is None else {"rect": list(p.rect), "parts": list(p.segments)} for p in placed]}


def frame_message(frame_id: int, live: LiveFrame, decode_ms: float = 0.0) -> dict:
    """The stream's answer to frame ``frame_id``: ``{"type": "result", "frame", "server_ms",
    "decode_ms", "overlay", ...}`` plus the JSON record of ``/predict`` (``image``, ``width``,
    ``height``, ``faces``: ``box``, ``score``, ``landmarks`` and ``face_id``, or ``five_points``
    without a model). ``server_ms`` counts decoding and tracking."""
    name = f"frame {frame_id}"
    record = (to_record(name, live.shape, live.faces) if live.detections is None
              else detections_record(name, live.shape, live.detections))
    return {"type": "result", "frame": int(frame_id), **record, "overlay": overlay(live),
            "server_ms": round(decode_ms + live.track_ms, 2), "decode_ms": round(decode_ms, 2)}


def overlay_style() -> dict:
    """The colours and region scheme the browser draws with: each region's index range and colour
    (``model.layout``), the box, five-point, outline and label colours (``model.draw``), as CSS."""
    return {"regions": [{"name": name, "start": lo, "stop": hi, "color": css_hex(REGION_COLORS[name])}
                        for name, (lo, hi) in REGIONS.items()],
            "box": css_hex(BOX_COLOR), "five_points": css_hex(MTCNN_COLOR), "outline": css_hex(OUTLINE_COLOR),
            "label_back": css_hex(LABEL_BACK_COLOR)}
