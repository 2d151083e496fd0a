"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): jitter removal for live landmarks.

A first-order low-pass filter whose cutoff rises with the signal's speed: slow movements (and
the frame-to-frame jitter of a still face) are smoothed strongly, fast movements follow with
little lag. The filter works element-wise on arrays of any shape, e.g. (98, 2) landmarks.

The arithmetic is in two pure functions (``smoothing_factor``, ``one_euro_step``); the
``OneEuroFilter`` class only keeps the previous state between frames. ``FaceSmoother`` filters the
landmarks of a list of tracked faces, one filter per face, and returns new ``Face`` objects: the
tracker's own faces are never touched, so smoothed (lagging) points never decide the next crop.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Defaults for landmarks in image pixels at webcam rates (640x480, 15-30 frames/s). min_cutoff
# (Hz): smoothing of a still face; beta (1/pixel): how fast the cutoff opens with speed; d_cutoff
# (Hz): smoothing of the speed estimate. At constant speed v (px/s) a first-order low-pass lags
# fps / (2 pi (min_cutoff + beta v)) frames: with beta 0.3, any motion of 1 px per frame or more
# lags less than half a frame at 15 and at 30 frames/s, while a still face's frame-to-frame jitter
# (1 px noise) is about halved. The speed estimate must follow within a few frames, hence
# d_cutoff 5 Hz: the paper's 1 Hz made the cutoff open about 0.2 s late, which is what lagged
# 1.4-2.3 frames behind a moving face. ``smoothing_figures`` measures both; ``python -m bench``
# prints them.
MIN_CUTOFF_HZ = 1.0
BETA = 0.3
D_CUTOFF_HZ = 5.0
# Frame interval assumed when no timestamps are given (a 30 frames/s camera).
DEFAULT_RATE_HZ = 30.0


def smoothing_factor(cutoff_hz, dt: float):
    """Exponential smoothing weight of a first-order low-pass with cutoff ``cutoff_hz`` at step ``dt``.

    alpha = r / (r + 1) with r = 2 pi cutoff dt; e.g. cutoff 1 / (2 pi) Hz and dt 1 s give 0.5.
    Works element-wise when ``cutoff_hz`` is an array.
    """
    r = 2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64) * dt
    return r / (r + 1.0)


@dataclass
class FilterState:
    """What the filter remembers: the last filtered value, its filtered speed, and the time."""

    value: np.ndarray
    speed: np.ndarray
    time: float


def one_euro_step(x, state: FilterState | None, time: float, min_cutoff: float = MIN_CUTOFF_HZ,
                  beta: float = BETA, d_cutoff: float = D_CUTOFF_HZ) -> FilterState:
    """One filter step: the new state, whose ``value`` is the filtered ``x``.

    Args:
        x: the new raw sample (any shape, float).
        state: the previous state, or ``None`` for the first sample (returned unfiltered).
        time: the sample's timestamp in seconds; must be later than ``state.time``.
        min_cutoff, beta, d_cutoff: the filter's parameters (see the module constants).
    """
    x = np.asarray(x, dtype=np.float64)
    if state is None:
        return FilterState(x.copy(), np.zeros_like(x), float(time))
    if x.shape != state.value.shape:
        raise ValueError(f"sample shape {x.shape} differs from the filter's shape {state.value.shape}")
    dt = float(time) - state.time
    if not dt > 0:
        raise ValueError(f"timestamps must increase: got {time} after {state.time}")
    speed = (x - state.value) / dt
    speed_hat = state.speed + smoothing_factor(d_cutoff, dt) * (speed - state.speed)
    cutoff = min_cutoff + beta * np.abs(speed_hat)
    value = state.value + smoothing_factor(cutoff, dt) * (x - state.value)
    return FilterState(value, speed_hat, float(time))


class OneEuroFilter:
    """Stateful wrapper: ``filter(x, time=None)`` returns the smoothed sample (float64 array).

    Args:
        min_cutoff: cutoff (Hz) when still; lower = smoother, more lag.
        beta: cutoff increase per unit of speed; higher = less lag on fast moves.
        d_cutoff: cutoff (Hz) for the speed estimate.
        rate_hz: sample rate assumed when ``time`` is not given.
    """

    def __init__(self, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA, d_cutoff: float = D_CUTOFF_HZ,
                 rate_hz: float = DEFAULT_RATE_HZ) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff), ("rate_hz", rate_hz)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be zero or positive, got {beta!r}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.rate_hz = float(rate_hz)
        self.state: FilterState | None = None

    def __call__(self, x, time: float | None = None) -> np.ndarray:
        if time is None:
            time = 0.0 if self.state is None else self.state.time + 1.0 / self.rate_hz
        self.state = one_euro_step(x, self.state, time, self.min_cutoff, self.beta, self.d_cutoff)
        return self.state.value.copy()

    def reset(self) -> None:
        """Forget the past (a new face, or a lost track): the next sample passes unfiltered."""
        self.state = None


class FaceSmoother:
    """One-Euro filters over the landmarks of tracked faces.

    ``__call__(faces, time)`` returns new ``Face`` objects (``dataclasses.replace``) with smoothed
    landmarks; the faces given are left as they are. Faces are told apart by ``face_id`` (by their
    position in the list when it is ``None``). When the set of faces changes (a face appears or
    leaves, or a re-detection gives new ids) every filter restarts, so points are never blended
    across two different faces.

    Args:
        **filter_options: ``OneEuroFilter`` parameters (min_cutoff, beta, d_cutoff, rate_hz).
    """

    def __init__(self, **filter_options) -> None:
        OneEuroFilter(**filter_options)  # check the options now, where they enter
        self.filter_options = filter_options
        self.filters: dict = {}

    def reset(self) -> None:
        """Forget every face: the next call passes its points through unfiltered."""
        self.filters = {}

    def __call__(self, faces: Sequence, time: float | None = None) -> list:
        keys = [i if face.face_id is None else ("id", face.face_id) for i, face in enumerate(faces)]
        if set(keys) != set(self.filters) or len(set(keys)) != len(keys):
            self.filters = {key: OneEuroFilter(**self.filter_options) for key in keys}
        return [dataclasses.replace(face, landmarks=self.filters[key](face.landmarks, time).astype(np.float32))
                for key, face in zip(keys, faces)]


def estimate_lag(reference, signal, settle: int = 0, max_lag: float = 5.0, step: float = 0.01,
                 remove_offset: bool = True) -> float:
    """Delay in frames of ``signal`` behind ``reference``: the shift d minimising the mean squared
    difference between signal[t] and reference(t - d) (linear interpolation between frames), after
    removing the constant offset between the two (a bias is not a lag).

    Args:
        reference, signal: (T, ...) arrays, one row per frame (e.g. (T, 98, 2) landmarks).
        settle: frames at the start left out (the filter's start-up).
        max_lag: the delays tried are -max_lag .. max_lag frames in steps of ``step``.
        remove_offset: fit a constant offset too (a detector bias); off for a straight-line track,
            where an offset and a delay cannot be told apart.

    Returns:
        the delay in frames (positive: ``signal`` comes later), e.g. 1.0 for signal[t] = reference[t - 1].
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    sig = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    if ref.shape != sig.shape:
        raise ValueError(f"reference and signal differ in shape: {ref.shape} and {sig.shape}")
    margin = int(math.ceil(max_lag))
    if len(ref) <= settle + 2 * margin + 1:
        raise ValueError(f"need more than {settle + 2 * margin + 1} frames for settle={settle} and "
                         f"max_lag={max_lag}, got {len(ref)}")
    frames = np.arange(len(ref), dtype=np.float64)
    inside = slice(settle + margin, len(ref) - margin)
    best_error, best_delay = math.inf, 0.0
    for delay in np.arange(-max_lag, max_lag + step / 2, step):
        at = np.clip(frames - delay, 0.0, len(ref) - 1.0)  # reference(t - delay), linear between frames
        low = np.minimum(at.astype(int), len(ref) - 2)
        weight = (at - low)[:, None]
        shifted = ref[low] * (1.0 - weight) + ref[low + 1] * weight
        diff = (sig - shifted)[inside]
        if remove_offset:
            diff = diff - diff.mean(axis=0)
        error = float((diff ** 2).mean())
        if error < best_error:
            best_error, best_delay = error, float(delay)
    return round(best_delay, 6)


def mean_jitter(track) -> float:
    """Mean frame-to-frame movement of points, in their units (pixels): (T, K, 2) or (T, 2) -> float.

    On a still face every movement is jitter."""
    track = np.asarray(track, dtype=np.float64)
    if track.ndim < 2 or track.shape[-1] != 2 or len(track) < 2:
        raise ValueError(f"track must be (T, K, 2) or (T, 2) with T >= 2, got shape {track.shape}")
    return float(np.linalg.norm(np.diff(track, axis=0), axis=-1).mean())


def smooth_track(track, rate_hz: float = DEFAULT_RATE_HZ, **filter_options) -> np.ndarray:
    """A whole (T, ...) track through a fresh ``OneEuroFilter`` at ``rate_hz`` frames/s: (T, ...) float64."""
    filt = OneEuroFilter(rate_hz=rate_hz, **filter_options)
    return np.stack([filt(sample, index / rate_hz) for index, sample in enumerate(np.asarray(track))])


def smoothing_figures(rate_hz: float = DEFAULT_RATE_HZ, noise_px: float = 1.0,
                      speed_px_per_frame: float = 3.0, frames: int = 240, seed: int = 0,
                      **filter_options) -> dict[str, float]:
    """Lag and jitter of the filter on synthetic tracks, raw and smoothed.

    - lag (frames): 98 points swinging left and right (a sine whose peak speed is
      ``speed_px_per_frame``, period 4 s) with ``noise_px`` Gaussian noise, against the true motion;
    - jitter (px): mean frame-to-frame movement of 98 still points with the same noise.

    Returns ``{"lag_raw", "lag_smoothed", "jitter_raw", "jitter_smoothed"}``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    period = 4.0 * rate_hz
    amplitude = speed_px_per_frame * period / (2.0 * math.pi)
    base = rng.uniform(200.0, 300.0, (98, 2))
    truth = base + (amplitude * np.sin(2.0 * math.pi * t / period))[:, None, None] * np.array([1.0, 0.0])
    moving = truth + rng.normal(0.0, noise_px, truth.shape)
    still = base + rng.normal(0.0, noise_px, truth.shape)
    settle = int(rate_hz)  # one second
    return {
        "lag_raw": estimate_lag(truth, moving, settle),
        "lag_smoothed": estimate_lag(truth, smooth_track(moving, rate_hz, **filter_options), settle),
        "jitter_raw": mean_jitter(still[settle:]),
        "jitter_smoothed": mean_jitter(smooth_track(still, rate_hz, **filter_options)[settle:]),
    }
