"""Serving policy, in one place: the engine's classes and limits, Gradio's queue, the listeners'
concurrency groups and the upload size limit.

The mechanism (batching worker, weighted round robin of classes, latest-wins slots) is
``model.engine`` with its own defaults; what the app asks of it is decided here:

- ``STILLS``: uploads and the ``/predict`` API (flip test on). A person is waiting for one answer.
- ``LIVE``: the webcam stream (one latest-wins slot per browser session: a frame that a newer one
  replaced while it waited is dropped, never shown late) and video jobs (no slot: every frame).
  Flip test off: one forward per keyframe.
- ``BATCH``: the WFLW browser's "Compute predictions" over the test set (the predictor's flip
  setting, on by default as in the published evaluation). Nobody watches it frame by frame; it must never hold up the others.

Weights: stills and live lead the same number of forwards (each waits at most about one forward
of the other), the batch class leads one in five. Every forward also takes whatever else is
waiting, up to ``ENGINE_CROPS_PER_FORWARD`` crops, so the weights matter only when the engine is
saturated.

Gradio's side: its queue holds at most ``GRADIO_QUEUE_SIZE`` events; listeners join concurrency
groups (``concurrency``): the still-image listeners that detect and run the network share
``NETWORK``, video, WFLW computation and review edits have their own, so an upload never waits for
them to end; other listeners run ``GRADIO_CONCURRENCY`` at a time. The webcam's frames go to the
live route (``app.live``), within the ``LIVE_*`` limits.
"""
from __future__ import annotations

from typing import NamedTuple

from model.engine import InferenceEngine
from model.pipeline import Predictor

# The engine: priority classes and their weights in the round robin.
STILLS, LIVE, BATCH = "stills", "live", "batch"
PRIORITY_WEIGHTS = {STILLS: 2, LIVE: 2, BATCH: 1}
# Engine requests waiting in all classes; a burst beyond this gets a "try again" error at once.
ENGINE_QUEUED_REQUESTS = 64
# Crops per engine forward: 16 faces with flip test, or 32 tracked faces.
ENGINE_CROPS_PER_FORWARD = 32
# Seconds a caller waits for its forward (queue wait included).
ENGINE_TIMEOUT_S = 60.0

# Gradio: events waiting in its queue beyond this many are turned away ("queue full").
GRADIO_QUEUE_SIZE = 32
# Listeners outside the groups below (filters, drawing) may run this many at once.
GRADIO_CONCURRENCY = 4
# Uploads larger than this are refused by the server before any callback runs.
MAX_FILE_SIZE = "25mb"

# The Webcam tab's live stream (``app.live``; its frames do not go through Gradio's queue):
# sessions streaming at once (one more is refused, 503, until one ends);
LIVE_MAX_STREAMS = 8
# frames a page may have sent and not yet had answered: one at the server, one on its way, so the
# server never waits for the network between two frames (a request beyond this is refused, 429);
LIVE_MAX_IN_FLIGHT = 2
# one frame's size: a camera frame as JPEG is 20-60 kB at 640x480, anything near these is not one.
LIVE_MAX_FRAME_BYTES = 2_000_000
LIVE_MAX_FRAME_PIXELS = 1920 * 1080


class Group(NamedTuple):
    """A Gradio concurrency group: its listeners run at most ``limit`` events at once, together."""

    id: str
    limit: int


NETWORK = Group("network", 1)          # uploads and /predict: detector + network on a still image
VIDEO = Group("video", 1)              # video jobs
WFLW_COMPUTE = Group("wflw-compute", 1)  # the WFLW browser's "Compute predictions"
REVIEW_EDITS = Group("review-edits", 1)  # verdicts and point fixes: one write at a time


def concurrency(group: Group) -> dict:
    """Listener keywords that put a listener in ``group``."""
    return dict(concurrency_id=group.id, concurrency_limit=group.limit)


def start_engine(predictor: Predictor) -> InferenceEngine:
    """One engine running ``predictor``'s own network, with the app's classes; stop it when done."""
    return InferenceEngine(predictor.runner, priorities=PRIORITY_WEIGHTS, max_queue=ENGINE_QUEUED_REQUESTS,
                           max_batch=ENGINE_CROPS_PER_FORWARD, timeout_s=ENGINE_TIMEOUT_S)


def stills_view(predictor: Predictor, engine: InferenceEngine) -> Predictor:
    """Uploads and the API: the predictor's flip setting, ``STILLS`` class."""
    return predictor.with_runner(engine.runner(STILLS))


def live_view(predictor: Predictor, engine: InferenceEngine, slot: str | None = None) -> Predictor:
    """Webcam (``slot``: one per browser session) and video jobs (no slot): no flip, ``LIVE`` class."""
    return predictor.with_runner(engine.runner(LIVE, slot=slot), flip_test=False)


def batch_view(predictor: Predictor, engine: InferenceEngine) -> Predictor:
    """The WFLW browser's "Compute predictions": the predictor's flip setting, ``BATCH`` class."""
    return predictor.with_runner(engine.runner(BATCH))
