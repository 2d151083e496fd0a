"""Serving policy: which callers share the inference engine, in which priority class, with which slot.

The mechanism (batching worker, weighted round robin of classes, latest-wins slots) is
``model.engine``; what the app asks of it is decided here, in one place:

- ``STILLS``: uploads and the ``/predict`` API (flip test on). A person is waiting for one answer.
- ``LIVE``: the webcam stream (one latest-wins slot per browser session: a frame that a newer one
  replaced while it waited is dropped, never shown late) and video jobs (no slot: every frame).
  Flip test off: one forward per keyframe.
- ``BATCH``: the WFLW browser's "Compute predictions" over the test set (the predictor's flip
  setting, on by default as in the published evaluation). Nobody watches it frame by frame; it must never hold up the others.

Weights: stills and live lead the same number of forwards (each waits at most about one forward
of the other), the batch class leads one in five. Every forward also takes whatever else is
waiting, up to ``MAX_BATCH`` crops, so the weights matter only when the engine is saturated.
"""
from __future__ import annotations

from model.engine import InferenceEngine
from model.pipeline import Predictor

STILLS, LIVE, BATCH = "stills", "live", "batch"
PRIORITY_WEIGHTS = {STILLS: 2, LIVE: 2, BATCH: 1}
# Requests waiting in all classes; a burst beyond this gets a "try again" error at once.
MAX_QUEUE = 64
# Crops per forward: 16 faces with flip test, or 32 tracked faces.
MAX_BATCH = 32
# Seconds a caller waits for its forward (queue wait included).
REQUEST_TIMEOUT_S = 60.0


def start_engine(predictor: Predictor) -> InferenceEngine:
    """One engine running ``predictor``'s own network, with the app's classes; stop it when done."""
    return InferenceEngine(predictor.runner, priorities=PRIORITY_WEIGHTS, max_queue=MAX_QUEUE,
                           max_batch=MAX_BATCH, timeout_s=REQUEST_TIMEOUT_S)


def stills_view(predictor: Predictor, engine: InferenceEngine) -> Predictor:
    """Uploads and the API: the predictor's flip setting, ``STILLS`` class."""
    return predictor.with_runner(engine.runner(STILLS))


def live_view(predictor: Predictor, engine: InferenceEngine, slot: str | None = None) -> Predictor:
    """Webcam (``slot``: one per browser session) and video jobs (no slot): no flip, ``LIVE`` class."""
    return predictor.with_runner(engine.runner(LIVE, slot=slot), flip_test=False)


def batch_view(predictor: Predictor, engine: InferenceEngine) -> Predictor:
    """The WFLW browser's "Compute predictions": the predictor's flip setting, ``BATCH`` class."""
    return predictor.with_runner(engine.runner(BATCH))
