"""The bench's "webcam path" rows run what the Webcam tab runs: every network forward goes through
the app's inference engine (counted by the engine and by the bench's recorder), and the bench
stops the engine it started."""
import numpy as np

from bench.__main__ import Recorder, lag_and_jitter, webcam_path
from bench.scenes import sequence
from model.pipeline import Predictor
from tests.helpers import constant_regressor, engine_threads


def test_a_bench_webcam_step_goes_through_the_engine(detector):
    model = constant_regressor(np.random.default_rng(0).uniform(0.3, 0.7, (98, 2)))
    own = Predictor(weights=model, device="cpu", flip_test=False, detector=detector, backend="torch")
    recorder = Recorder(own.runner)
    predictor = own.with_runner(recorder)
    before = len(engine_threads())
    step, ctx = webcam_path(predictor, redetect_every=4, keyframe_every=2)
    frames, _ = sequence(6)
    try:
        assert len(engine_threads()) == before + 1
        shown = [step(frame) for frame in frames]
        # each step answers as the live route does: the frame's size and one tracked face with its points
        assert all((out["width"], out["height"]) == (frames[0].shape[1], frames[0].shape[0]) for out in shown)
        assert all(len(out["faces"]) == 1 and len(out["faces"][0]["landmarks"]) == 98 for out in shown)
        assert ctx.engine.forwards >= 3  # keyframes on frames 0, 2, 4 at least
        assert len(recorder.calls) == ctx.engine.forwards  # every network call came from the engine's worker
        assert set(ctx.engine.leaders) == {"live"}
    finally:
        ctx.close()
    assert len(engine_threads()) == before


def test_lag_and_jitter_of_a_perfect_still_track_are_zero():
    from model.pipeline import Face

    faces = [[Face(np.array([0, 0, 10, 10]), 1.0, np.full((98, 2), 5.0))] for _ in range(30)]
    figures = lag_and_jitter(faces, faces, 30)
    assert figures["jitter_raw_px"] == 0.0 and figures["jitter_smoothed_px"] == 0.0
    assert np.isnan(lag_and_jitter([[]] * 30, faces, 30)["lag_raw"])  # no face in a frame: no figure
