"""Headless Chromium for the benchmarks and the browser tests: where it is, how it is launched, a
free port, and a fake camera whose every frame carries its own number.

The camera is Chromium's fake device playing a YUV4MPEG2 clip (it loops the file). Each frame of
``camera_clip`` shows a real photo at a known place (by default sliding left and right), and its
frame code:
``CODE_BITS`` blocks across the top-left corner, black for a 1 and white for a 0 (the frame's index,
most significant bit first), and under them the same blocks inverted. A code read off a page is
only taken when the two rows disagree everywhere (``read_frame_code``, ``READ_CODE_JS``), so a
blurred or half-covered code reads as no code rather than a wrong number.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Debian's chromium, driven by Playwright (never `playwright install`), with nothing phoning home.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The fake camera, and the flag that allows it without a prompt; ``camera_args`` adds the clip it plays.
FAKE_DEVICE, AUTO_ALLOW = "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"
FAKE_CAMERA_ARGS = [AUTO_ALLOW, FAKE_DEVICE]

# The frame code: CODE_BITS blocks of CODE_BLOCK (width, height) pixels in two rows from (0, 0).
CODE_BITS = 12
CODE_BLOCK = (20, 10)
# The clip: frame size and rate, the photo's side and where it starts, and its speed: 80 px/s, a
# head turning at an easy pace (the face in the photo is about 100 px wide).
CLIP_SIZE = (640, 480)
CLIP_FPS = 30
PHOTO_SIDE = 260
PHOTO_TOP, PHOTO_LEFT = 110, 100
SPEED_PX_S = 80.0
BACKGROUND = 120


def camera_args(clip: Path) -> list[str]:
    """Chromium flags for a fake camera playing ``clip`` (a .y4m file)."""
    return [*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={clip}"]


def draw_frame_code(frame: np.ndarray, number: int) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``number`` (0 .. 2**CODE_BITS - 1) coded into its top-left corner."""
    if not 0 <= int(number) < 2 ** CODE_BITS:
        raise ValueError(f"a frame code holds 0 to {2 ** CODE_BITS - 1}, got {number}")
    out = np.array(frame, dtype=np.uint8, copy=True)
    w, h = CODE_BLOCK
    for i in range(CODE_BITS):
        bit = (int(number) >> (CODE_BITS - 1 - i)) & 1
        out[0:h, i * w:(i + 1) * w] = 0 if bit else 255
        out[h:2 * h, i * w:(i + 1) * w] = 255 if bit else 0
    return out


def read_frame_code(frame: np.ndarray) -> int | None:
    """The number coded into ``frame`` (H, W, 3) by ``draw_frame_code``, or ``None`` where there is none."""
    w, h = CODE_BLOCK
    grey = np.asarray(frame, dtype=np.float64)[: 2 * h, : CODE_BITS * w].mean(axis=2)
    number = 0
    for i in range(CODE_BITS):
        top = grey[h // 4: 3 * h // 4, i * w + w // 4: i * w + 3 * w // 4].mean() < 128
        bottom = grey[h + h // 4: h + 3 * h // 4, i * w + w // 4: i * w + 3 * w // 4].mean() < 128
        if top == bottom:
            return None
        number = 2 * number + int(top)
    return number


# The same reader in the page: ``(canvas) => number | null`` over a canvas that shows a coded frame.
READ_CODE_JS = f"""(canvas) => {{
  const [bits, w, h] = [{CODE_BITS}, {CODE_BLOCK[0]}, {CODE_BLOCK[1]}];
  const data = canvas.getContext('2d').getImageData(0, 0, bits * w, 2 * h).data;
  const dark = (i, row) => {{
    let sum = 0, n = 0;
    for (let y = row * h + Math.floor(h / 4); y < row * h + Math.floor(3 * h / 4); y++)
      for (let x = i * w + Math.floor(w / 4); x < i * w + Math.floor(3 * w / 4); x++) {{
        const k = 4 * (y * bits * w + x); sum += data[k] + data[k + 1] + data[k + 2]; n += 3;
      }}
    return sum / n < 128;
  }};
  let number = 0;
  for (let i = 0; i < bits; i++) {{
    const top = dark(i, 0);
    if (top === dark(i, 1)) return null;
    number = 2 * number + (top ? 1 : 0);
  }}
  return number;
}}"""


def sliding(count: int, step: float) -> list[int]:
    """Left edges (whole pixels) of the photo in a ``count``-frame clip where it slides right by
    ``step`` pixels per frame for half the clip, then back."""
    half = count // 2
    return [PHOTO_LEFT + int(round(step * (t if t < half else count - t))) for t in range(count)]


def camera_frames(photo_rgb: np.ndarray, lefts: list[int], top: int = PHOTO_TOP) -> list[np.ndarray]:
    """Coded CLIP_SIZE RGB frames, one per entry of ``lefts``: the photo (resized to PHOTO_SIDE)
    on grey with its left edge at ``lefts[t]`` and its top edge at row ``top``, frame number ``t``."""
    photo = cv2.resize(photo_rgb, (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_AREA)
    width, height = CLIP_SIZE
    frames = []
    for t, x in enumerate(lefts):
        if not (0 <= x <= width - PHOTO_SIDE and 0 <= top <= height - PHOTO_SIDE):
            raise ValueError(f"frame {t}: the photo at ({x}, {top}) does not fit in {width}x{height}")
        frame = np.full((height, width, 3), BACKGROUND, np.uint8)
        frame[top:top + PHOTO_SIDE, x:x + PHOTO_SIDE] = photo
        frames.append(draw_frame_code(frame, t))
    return frames


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = CLIP_FPS) -> Path:
    """RGB frames (all one size, even sides) as a YUV4MPEG2 4:2:0 clip that Chromium's fake camera plays."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return Path(path)


def camera_clip(photo_rgb: np.ndarray, path: Path, lefts: list[int] | None = None, fps: int = CLIP_FPS,
                top: int = PHOTO_TOP) -> Path:
    """``camera_frames`` written to ``path`` as a .y4m clip for ``camera_args``; by default 3 s at
    30 frames/s of the photo sliding at ``SPEED_PX_S`` (``sliding``)."""
    lefts = sliding(3 * CLIP_FPS, SPEED_PX_S / CLIP_FPS) if lefts is None else lefts
    return write_y4m(camera_frames(photo_rgb, lefts, top), path, fps)
