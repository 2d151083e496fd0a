"""One inference engine for every caller: a worker thread owns the network and batches requests.

Every caller (upload, API, webcam, video, the WFLW browser's compute) hands its crops to
``InferenceEngine.run``; a single worker thread takes whatever is waiting, concatenates the crops
of all waiting requests into one forward (dynamic batching: requests that arrive while a forward
runs share the next one) and hands each caller its rows. So no caller holds the network for longer
than its own forward, and a stream never blocks an upload for the length of the stream.

- Bounded: at most ``max_queue`` requests wait; one more raises ``QueueFullError``.
- Per-request timeout: a caller waits at most ``timeout_s``; then ``EngineTimeout`` is raised and a
  request that had not started is taken off the queue.
- Latest-wins slots: a request submitted with ``slot=key`` replaces a request of the same key that
  is still waiting (a live stream's frame that arrived while the previous one was in flight); the
  replaced request's result is ``DROPPED``, not an error.
- Foreground first: stills (uploads, the API) mark their detector and network work as foreground;
  live streams and video jobs (``EnginePredictor.live()``) wait, at most ``BACKGROUND_MAX_WAIT_S``,
  while any foreground work runs. On 2 CPU cores a stream would otherwise take half the machine
  from an upload; this way the stream loses a few frames (it is latest-wins anyway) and the
  upload runs at its idle speed.

``EnginePredictor`` is a ``model.pipeline.Predictor`` whose ``run_network`` goes through an engine,
so callers keep calling ``predict``, ``predict_boxes`` and ``faces_from_detections`` unchanged.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import threading
import time
from collections import deque
from typing import Callable, Hashable, Iterator

import numpy as np

from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor

log = logging.getLogger(__name__)

# Requests waiting for the worker beyond this many are refused (QueueFullError), so a burst of
# clients gets a clear answer instead of an ever longer wait.
MAX_QUEUE = 64
# Most crops in one forward; a larger single request still runs whole, alone. 64 crops of
# 256 x 256 are about 50 MB of input and a few hundred MB of activations on CPU.
MAX_BATCH = 64
# A caller gives up after this many seconds (queue wait plus forward).
REQUEST_TIMEOUT_S = 60.0
# Background work (streams, video jobs) waits at most this long for foreground work to finish,
# so that a burst of uploads slows a stream down but never freezes it.
BACKGROUND_MAX_WAIT_S = 2.0
# ... and until this long after the last foreground work ended: an upload's drawing, JSON and
# image encoding follow its network forward, and a stream frame there would halve their CPU.
FOREGROUND_GRACE_S = 0.5


class EngineError(RuntimeError):
    """The engine could not run a request (queue full, timeout, stopped)."""


class QueueFullError(EngineError):
    """More than ``max_queue`` requests were waiting."""


class EngineTimeout(EngineError):
    """A request got no result within its timeout."""


class FrameDropped(Exception):
    """Raised by ``EnginePredictor.run_network`` when a newer request of the same slot replaced this one."""


class _Dropped:
    def __repr__(self) -> str:
        return "DROPPED"


# The result of a request that a newer request of the same slot replaced.
DROPPED = _Dropped()

# The slot of the requests made in this context (``EnginePredictor.slot``); ``None``: no slot.
_current_slot: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar("engine_slot", default=None)


class Request:
    """One caller's crops and, once done, its result (an array, ``DROPPED`` or an exception)."""

    def __init__(self, crops: np.ndarray, slot: Hashable | None) -> None:
        self.crops = crops
        self.slot = slot
        self.done = threading.Event()
        self.result: np.ndarray | _Dropped | None = None
        self.error: BaseException | None = None
        self.started = False

    def _finish(self, result=None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class InferenceEngine:
    """A worker thread that runs ``network`` on the batched crops of concurrent requests.

    Args:
        network: (N, S, S, 3) uint8 crops -> (N, 98, 2) float32 outputs; only the worker calls it.
        max_queue: most requests waiting (not counting the forward in flight).
        max_batch: most crops gathered into one forward.
        timeout_s: default per-request timeout in seconds (queue wait plus forward).
        start: start the worker now (``False``: call ``start()`` later; requests wait until then).
    """

    def __init__(self, network: Callable[[np.ndarray], np.ndarray], max_queue: int = MAX_QUEUE,
                 max_batch: int = MAX_BATCH, timeout_s: float = REQUEST_TIMEOUT_S, start: bool = True) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError(f"max_queue and max_batch must be at least 1, got {max_queue} and {max_batch}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.network = network
        self.max_queue, self.max_batch, self.timeout_s = int(max_queue), int(max_batch), float(timeout_s)
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._foreground = 0
        self._foreground_end = float("-inf")
        self._thread: threading.Thread | None = None
        # Statistics: forwards run, and the number of requests and crops in each (the last 1000).
        self.forwards = 0
        self.batch_sizes: deque[tuple[int, int]] = deque(maxlen=1000)
        if start:
            self.start()

    def start(self) -> None:
        """Start the worker thread (once)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="inference-engine", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the worker; waiting requests fail with ``EngineError``."""
        with self._cond:
            self._stopped = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for request in waiting:
            request._finish(error=EngineError("the inference engine was stopped"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    @contextlib.contextmanager
    def foreground(self) -> Iterator[None]:
        """Mark the work inside this block as foreground (background work waits for it)."""
        with self._cond:
            self._foreground += 1
        try:
            yield
        finally:
            with self._cond:
                self._foreground -= 1
                self._foreground_end = time.monotonic()
                self._cond.notify_all()

    def yield_to_foreground(self, max_wait_s: float = BACKGROUND_MAX_WAIT_S,
                            grace_s: float = FOREGROUND_GRACE_S) -> float:
        """Wait while foreground work runs and for ``grace_s`` after it ended, at most ``max_wait_s``
        in all; returns the seconds waited."""
        start = time.monotonic()
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                left = max_wait_s - (now - start)
                if self._foreground:
                    wait = left
                else:
                    wait = min(left, self._foreground_end + grace_s - now)
                if wait <= 0:
                    break
                self._cond.wait(wait)
        return time.monotonic() - start

    def pending(self) -> int:
        """Requests waiting for the worker."""
        with self._cond:
            return len(self._queue)

    def submit(self, crops: np.ndarray, slot: Hashable | None = None) -> Request:
        """Queue (N, S, S, 3) uint8 crops; ``slot`` makes the request latest-wins (see the module doc)."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (N, S, S, 3) uint8, got shape {crops.shape} dtype {crops.dtype}")
        request = Request(crops, slot)
        replaced = None
        with self._cond:
            if self._stopped:
                raise EngineError("the inference engine was stopped")
            if slot is not None:
                for i, waiting in enumerate(self._queue):
                    if waiting.slot == slot:
                        replaced = waiting
                        self._queue[i] = request  # the newer frame takes the older one's place
                        break
            if replaced is None:
                if len(self._queue) >= self.max_queue:
                    raise QueueFullError(f"the inference queue is full ({len(self._queue)} requests waiting, "
                                         f"max_queue={self.max_queue}); try again in a moment")
                self._queue.append(request)
            self._cond.notify_all()
        if replaced is not None:
            replaced._finish(result=DROPPED)
        return request

    def wait(self, request: Request, timeout_s: float | None = None):
        """The request's result: (N, 98, 2) float32 or ``DROPPED``; raises its error or ``EngineTimeout``."""
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        if not request.done.wait(timeout_s):
            with self._cond:
                if request in self._queue:
                    self._queue.remove(request)
                state = "running" if request.started else "still queued"
                waiting = len(self._queue)
            raise EngineTimeout(f"no network result within {timeout_s:g} s (request {state}, "
                                f"{waiting} other requests waiting)")
        if request.error is not None:
            raise request.error
        return request.result

    def run(self, crops: np.ndarray, slot: Hashable | None = None, timeout_s: float | None = None):
        """Submit and wait: (N, 98, 2) float32 outputs, or ``DROPPED`` when a newer request of ``slot`` replaced it."""
        if len(crops) == 0:
            return np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        return self.wait(self.submit(crops, slot), timeout_s)

    def _take_batch(self) -> list[Request] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            batch = [self._queue.popleft()]
            total = len(batch[0].crops)
            while self._queue and total + len(self._queue[0].crops) <= self.max_batch:
                request = self._queue.popleft()
                total += len(request.crops)
                batch.append(request)
            for request in batch:
                request.started = True
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            crops = batch[0].crops if len(batch) == 1 else np.concatenate([r.crops for r in batch])
            try:
                out = np.asarray(self.network(crops), dtype=np.float32)
            except Exception as exc:  # handed to every caller of this forward, each re-raises it
                log.exception("network forward failed on %d crops", len(crops))
                for request in batch:
                    request._finish(error=exc)
                continue
            self.forwards += 1
            self.batch_sizes.append((len(batch), len(crops)))
            start = 0
            for request in batch:
                request._finish(result=out[start:start + len(request.crops)])
                start += len(request.crops)


class EnginePredictor(Predictor):
    """A ``Predictor`` whose network forwards go through an ``InferenceEngine``.

    Built from a loaded predictor with ``EnginePredictor.wrap(predictor)`` (the weights, detector and
    backend are shared, nothing is loaded again); its detector and network work is foreground.
    ``live()`` gives a view of the same engine and detector with test-time flip off and background
    priority: the webcam and video paths.
    """

    engine: InferenceEngine
    background: bool = False

    @classmethod
    def wrap(cls, predictor: Predictor, engine: InferenceEngine | None = None, **engine_options) -> "EnginePredictor":
        if isinstance(predictor, EnginePredictor):
            return predictor
        _ = predictor.detector  # build the detector now, so that every view shares this one
        wrapped = cls.__new__(cls)
        wrapped.__dict__.update(predictor.__dict__)  # the same model, backend, detector and settings
        wrapped.engine = engine if engine is not None else InferenceEngine(predictor.run_network, **engine_options)
        return wrapped

    def _priority(self):
        if self.background:
            self.engine.yield_to_foreground()
            return contextlib.nullcontext()
        return self.engine.foreground()

    def run_network(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 98, 2) through the engine; raises ``FrameDropped`` when replaced."""
        with self._priority():
            out = self.engine.run(crops, slot=_current_slot.get())
        if out is DROPPED:
            raise FrameDropped("a newer frame of the same stream replaced this one")
        return out

    def detect(self, image_rgb: np.ndarray):
        with self._priority():
            return super().detect(image_rgb)

    def predict(self, image_rgb: np.ndarray):
        with self._priority():
            return super().predict(image_rgb)

    def predict_boxes(self, image_rgb: np.ndarray, boxes_xyxy) -> np.ndarray:
        with self._priority():
            return super().predict_boxes(image_rgb, boxes_xyxy)

    def live(self) -> "EnginePredictor":
        """The same engine and detector with test-time flip off and background priority."""
        view = copy.copy(self)
        view.flip_test = False
        view.background = True
        return view

    @staticmethod
    @contextlib.contextmanager
    def slot(key: Hashable) -> Iterator[None]:
        """Within this block, network requests of this thread are latest-wins under ``key``."""
        token = _current_slot.set(key)
        try:
            yield
        finally:
            _current_slot.reset(token)

