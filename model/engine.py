"""One inference engine for many callers: a worker thread owns the network and batches requests.

Callers hand their crops to the engine through a *runner* (``engine.runner(priority, slot)``), a
callable (N, S, S, 3) uint8 -> (N, 98, 2) float32 that a ``model.pipeline.Predictor`` takes as its
``runner``. A single worker thread takes whatever is waiting, concatenates the crops of the waiting
requests into one forward (dynamic batching: requests that arrive while a forward runs share the
next one) and hands each caller its rows. Each request is a ``concurrent.futures.Future``.

- Priority classes, interleaved per forward: each class has a weight; the worker visits the
  classes in a fixed weighted round robin (a class of weight 2 leads two forwards in a row) and
  skips classes with nothing waiting. The leading class's requests go first into the batch; the
  room left (``max_batch`` crops) is filled from the other classes in schedule order. So a
  class never waits for more than one forward per other class, whatever the others queue.
- Bounded: at most ``max_queue`` requests wait in all; one more raises ``QueueFullError``.
- Per-request timeout: a caller waits at most ``timeout_s``; then ``EngineTimeout`` is raised and a
  request that had not started is cancelled (taken off the queue).
- Latest-wins slots: a request submitted with ``slot=key`` replaces a request of the same key that
  is still waiting (a live stream's frame that arrived while the previous one was in flight); the
  replaced request fails with ``FrameDropped``.

Which classes exist, their weights and which callers get which slot is the serving policy of the
app (``app.serving``); this module is the mechanism only.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

import numpy as np

from model.layout import NUM_LANDMARKS

log = logging.getLogger(__name__)

# The mechanism's defaults, for an engine built without a policy (the app's own policy, with its
# own names and values, is ``app.serving``).
# Requests waiting for the worker beyond this many are refused (QueueFullError), so a burst of
# clients gets a clear answer instead of an ever longer wait.
DEFAULT_MAX_QUEUE = 64
# Most crops in one forward; a larger single request still runs whole, alone. 64 crops of
# 256 x 256 are about 50 MB of input and a few hundred MB of activations on CPU.
DEFAULT_MAX_BATCH = 64
# A caller gives up after this many seconds (queue wait plus forward).
DEFAULT_TIMEOUT_S = 60.0
# The one class of an engine built without ``priorities``.
DEFAULT_PRIORITY = "default"
# How long ``stop`` waits for the forward in flight to end.
STOP_JOIN_S = 10.0


class EngineError(RuntimeError):
    """The engine could not run a request (queue full, timeout, stopped)."""


class QueueFullError(EngineError):
    """More than ``max_queue`` requests were waiting."""


class EngineTimeout(EngineError):
    """A request got no result within its timeout."""


class FrameDropped(Exception):
    """A newer request of the same slot replaced this one before it ran (a live stream's old frame)."""


@dataclass(eq=False)
class _Request:
    crops: np.ndarray
    priority: str
    slot: Hashable | None
    future: Future


def weighted_schedule(priorities: Mapping[str, int]) -> tuple[str, ...]:
    """The round robin of classes: each name ``weight`` times, e.g. {"a": 2, "b": 1} -> ("a", "a", "b")."""
    if not priorities:
        raise ValueError("priorities must name at least one class")
    for name, weight in priorities.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError(f"priority {name!r} needs a whole weight of at least 1, got {weight!r}")
    return tuple(name for name, weight in priorities.items() for _ in range(weight))


class InferenceEngine:
    """A worker thread that runs ``network`` on the batched crops of concurrent requests.

    Args:
        network: (N, S, S, 3) uint8 crops -> (N, 98, 2) float32 outputs; only the worker calls it.
        priorities: class name -> weight in the round robin (see the module doc); default one class.
        max_queue: most requests waiting in all classes (not counting the forward in flight).
        max_batch: most crops gathered into one forward.
        timeout_s: default per-request timeout in seconds (queue wait plus forward).
        start: start the worker now (``False``: call ``start()`` later; requests wait until then).

    Stop it with ``stop()`` (or use it as a context manager): the worker is a thread.
    """

    def __init__(self, network: Callable[[np.ndarray], np.ndarray], *,
                 priorities: Mapping[str, int] | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                 max_batch: int = DEFAULT_MAX_BATCH, timeout_s: float = DEFAULT_TIMEOUT_S, start: bool = True) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError(f"max_queue and max_batch must be at least 1, got {max_queue} and {max_batch}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.network = network
        self.schedule = weighted_schedule(dict(priorities or {DEFAULT_PRIORITY: 1}))
        self.max_queue, self.max_batch, self.timeout_s = int(max_queue), int(max_batch), float(timeout_s)
        self._queues: dict[str, deque[_Request]] = {name: deque() for name in dict.fromkeys(self.schedule)}
        self._turn = 0  # index into ``schedule`` of the class that leads the next forward
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        # Statistics: forwards run, the (requests, crops) of each and the class that led it (last 1000).
        self.forwards = 0
        self.batch_sizes: deque[tuple[int, int]] = deque(maxlen=1000)
        self.leaders: deque[str] = deque(maxlen=1000)
        if start:
            self.start()

    @property
    def priorities(self) -> tuple[str, ...]:
        """The class names, in schedule order."""
        return tuple(self._queues)

    def start(self) -> None:
        """Start the worker thread (once)."""
        with self._cond:
            if self._stopped:
                raise EngineError("the inference engine was stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="inference-engine", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the worker and wait for it; waiting requests fail with ``EngineError``. Idempotent."""
        with self._cond:
            self._stopped = True
            waiting = [r for queue in self._queues.values() for r in queue]
            for queue in self._queues.values():
                queue.clear()
            self._cond.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(EngineError("the inference engine was stopped"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_JOIN_S)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "InferenceEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def pending(self, priority: str | None = None) -> int:
        """Requests waiting for the worker (in one class, or in all)."""
        with self._cond:
            if priority is not None:
                return len(self._queues[self._check(priority)])
            return sum(len(queue) for queue in self._queues.values())

    def _check(self, priority: str) -> str:
        if priority not in self._queues:
            raise ValueError(f"unknown priority {priority!r}; this engine has {', '.join(self._queues)}")
        return priority

    def submit(self, crops: np.ndarray, priority: str | None = None, slot: Hashable | None = None) -> Future:
        """Queue (N, S, S, 3) uint8 crops in class ``priority`` (default: the first class); ``slot``
        makes the request latest-wins (see the module doc). Returns its ``Future``."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (N, S, S, 3) uint8, got shape {crops.shape} dtype {crops.dtype}")
        priority = self._check(self.schedule[0] if priority is None else priority)
        request = _Request(crops, priority, slot, Future())
        replaced = None
        with self._cond:
            if self._stopped:
                raise EngineError("the inference engine was stopped")
            queue = self._queues[priority]
            if slot is not None:
                for i, waiting in enumerate(queue):
                    if waiting.slot == slot:
                        replaced, queue[i] = waiting, request  # the newer frame takes the older one's place
                        break
            if replaced is None:
                waiting = sum(len(q) for q in self._queues.values())
                if waiting >= self.max_queue:
                    raise QueueFullError(f"the inference queue is full ({waiting} requests waiting, "
                                         f"max_queue={self.max_queue}); try again in a moment")
                queue.append(request)
            self._cond.notify_all()
        if replaced is not None and replaced.future.set_running_or_notify_cancel():
            replaced.future.set_exception(FrameDropped("a newer frame of the same stream replaced this one"))
        return request.future

    def wait(self, future: Future, timeout_s: float | None = None) -> np.ndarray:
        """The result of a submitted request: (N, 98, 2) float32. Raises its error (``FrameDropped``
        when replaced, the network's exception, ``EngineError``) or ``EngineTimeout``."""
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            state = "still queued" if future.cancel() else "running"
            if state == "still queued":
                with self._cond:
                    for queue in self._queues.values():
                        for request in [r for r in queue if r.future is future]:
                            queue.remove(request)
            raise EngineTimeout(f"no network result within {timeout_s:g} s (request {state}, "
                                f"{self.pending()} other requests waiting)") from None

    def run(self, crops: np.ndarray, priority: str | None = None, slot: Hashable | None = None,
            timeout_s: float | None = None) -> np.ndarray:
        """Submit and wait: (N, 98, 2) float32 outputs; raises ``FrameDropped`` when a newer request
        of ``slot`` replaced this one."""
        if len(crops) == 0:
            return np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        return self.wait(self.submit(crops, priority, slot), timeout_s)

    def runner(self, priority: str | None = None, slot: Hashable | None = None) -> "EngineRunner":
        """A network callable for ``Predictor(runner=...)``: its forwards go through this engine in
        class ``priority`` (default: the first class), latest-wins under ``slot`` when given."""
        return EngineRunner(self, self._check(self.schedule[0] if priority is None else priority), slot)

    def _take_batch(self) -> list[_Request] | None:
        """The next forward's requests: the leading class first, then the others (see the module doc)."""
        with self._cond:
            while not self._stopped and not any(self._queues.values()):
                self._cond.wait()
            if self._stopped:
                return None
            n = len(self.schedule)
            turns = [(self._turn + k) % n for k in range(n)]
            lead = next(t for t in turns if self._queues[self.schedule[t]])
            self._turn = (lead + 1) % n
            order = list(dict.fromkeys(self.schedule[(lead + k) % n] for k in range(n)))
            batch, total = [], 0
            for name in order:
                queue = self._queues[name]
                while queue and (not batch or total + len(queue[0].crops) <= self.max_batch):
                    request = queue.popleft()
                    if request.future.set_running_or_notify_cancel():  # False: cancelled by a timeout
                        batch.append(request)
                        total += len(request.crops)
            self.leaders.append(self.schedule[lead])
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            crops = batch[0].crops if len(batch) == 1 else np.concatenate([r.crops for r in batch])
            try:
                out = np.asarray(self.network(crops), dtype=np.float32)
            except Exception as exc:  # handed to every caller of this forward, each re-raises it
                log.exception("network forward failed on %d crops", len(crops))
                for request in batch:
                    request.future.set_exception(exc)
                continue
            self.forwards += 1
            self.batch_sizes.append((len(batch), len(crops)))
            start = 0
            for request in batch:
                request.future.set_result(out[start:start + len(request.crops)])
                start += len(request.crops)


@dataclass(frozen=True)
class EngineRunner:
    """A network callable whose forwards go through ``engine`` in class ``priority``, latest-wins
    under ``slot`` (``None``: every request runs). Built by ``InferenceEngine.runner``."""

    engine: InferenceEngine
    priority: str
    slot: Hashable | None = None

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, 98, 2) float32; raises ``FrameDropped`` when replaced."""
        return self.engine.run(crops, self.priority, self.slot)
