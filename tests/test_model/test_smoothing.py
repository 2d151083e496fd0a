"""One-Euro filter: hand-worked steps, constant input, step response, jitter reduction."""
import math

import numpy as np
import pytest

from model.smoothing import OneEuroFilter, one_euro_step, smoothing_factor

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
    assert smoothed[30:].var(axis=0).mean() < 0.2 * noisy[30:].var(axis=0).mean()


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
