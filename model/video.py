"""Landmarks on a video file: an annotated H.264 mp4, a CSV of the points, optionally JSON (the
command line ``python -m model.video`` and the Video tab's work, ``app.video``).

    python -m model.video IN... --out annotated.mp4 --csv landmarks.csv [--json landmarks.json]
                          [--weights W] [--device auto|cpu|cuda|cuda:N] [--max-faces N] [--no-smooth]
                          [--min-score S] [--min-size PX]

Frames are decoded and encoded with PyAV (``av``), whose wheel ships FFmpeg with libx264: no system
ffmpeg is needed. Every frame goes through the webcam's ``FaceTracker`` (detector every few frames,
network on keyframes without flip test, optical flow in between) and, unless ``--no-smooth``, the
One-Euro ``FaceSmoother``. The output is H.264 (yuv420p, ``+faststart``) in mp4, which Chromium
plays. The CSV has one row per face per frame: ``frame, time_s, face_id, score, x0..x97, y0..y97``.

Which detections become tracked faces is the Upload tab's rule (``model.selection.FaceFilter``;
``--min-score``, ``--min-size`` and ``--max-faces`` with its defaults): MTCNN also boxes hands and
prints, at lower scores than real faces, and ``--min-score 0.995`` leaves them out.

A file that is not a video, is truncated or holds no frames gives an error naming the file; nothing
is written under its output names, the other videos are still done, and the exit status is 1. With
several videos ``--out``, ``--csv`` and ``--json`` name folders laid out as ``model.predict``'s
(``model.cli.BatchOutputs``: the inputs' relative paths, never one output written twice).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from model.cli import BatchOutputs, add_face_filter_arguments, add_model_arguments, face_filter_from_args
from model.draw import draw_faces
from model.io import atomic_write, atomic_write_json, atomic_write_text
from model.layout import NUM_LANDMARKS
from model.pipeline import Face, Predictor
from model.selection import FaceFilter
from model.smoothing import FaceSmoother
from model.text import counted
from model.tracking import FaceTracker

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi")
# Frame rate assumed when the file does not state one.
DEFAULT_FPS = 30
# libx264 settings: constant quality 23 (its default) at the "veryfast" preset, which keeps the
# encoder a small share of the per-frame cost on 2 cores.
H264_OPTIONS = {"crf": "23", "preset": "veryfast"}
# The CSV's columns: frame index, time in seconds, face id, score, then all x, then all y.
CSV_COLUMNS = (["frame", "time_s", "face_id", "score"] + [f"x{i}" for i in range(NUM_LANDMARKS)]
               + [f"y{i}" for i in range(NUM_LANDMARKS)])


class VideoError(ValueError):
    """A video file that cannot be read (not a video, truncated, no frames)."""


@dataclass
class VideoInfo:
    """What the container says: frame size, frames per second, frame count (0: unknown)."""

    width: int
    height: int
    fps: float
    frames: int


@dataclass
class VideoResult:
    """What ``annotate_video`` did: per frame its time and faces (``Face`` records as written)."""

    info: VideoInfo
    times_s: list[float] = field(default_factory=list)
    faces: list[list[Face]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def frames(self) -> int:
        return len(self.times_s)


def _open(path: Path):
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file holds no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Frame size, rate and count of a video file (the count is 0 when the container omits it)."""
    path = Path(path)
    container = _open(path)
    try:
        return _info(container.streams.video[0])
    finally:
        container.close()


def _info(stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else float(DEFAULT_FPS)
    frames = int(stream.frames or 0)
    if not frames and stream.duration and stream.time_base:
        frames = int(round(float(stream.duration * stream.time_base) * fps))
    return VideoInfo(int(stream.codec_context.width), int(stream.codec_context.height), fps, frames)


def read_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, (H, W, 3) uint8 RGB) for every frame; ``VideoError`` when the file is not
    a video, breaks off, or holds no frame."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        info = _info(stream)
        count = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else count / info.fps
                yield t, frame.to_ndarray(format="rgb24")
                count += 1
        except (av.FFmpegError, EOFError) as exc:
            raise VideoError(f"{path}: the video is truncated or damaged after frame {count} ({exc})") from None
        if count == 0:
            raise VideoError(f"{path}: the video holds no frames")
        if stream.frames and count < int(stream.frames) * 0.95:
            raise VideoError(f"{path}: the video is truncated: {count} of {stream.frames} frames could be read")
    finally:
        container.close()


def csv_row(frame: int, time_s: float, face: Face) -> list:
    """One CSV row (see ``CSV_COLUMNS``)."""
    pts = np.asarray(face.landmarks, dtype=np.float64)
    face_id = "" if face.face_id is None else face.face_id
    return ([frame, f"{time_s:.4f}", face_id, f"{float(face.score):.4f}"]
            + [f"{v:.2f}" for v in pts[:, 0]] + [f"{v:.2f}" for v in pts[:, 1]])


def csv_text(result: VideoResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for index, (t, faces) in enumerate(zip(result.times_s, result.faces)):
        for face in faces:
            writer.writerow(csv_row(index, t, face))
    return buffer.getvalue()


def json_record(name: str, result: VideoResult) -> dict:
    """``{"video", "width", "height", "fps", "frames": [{"frame", "time_s", "faces": [...]}]}``;
    faces in the schema of ``Face.to_dict`` (the /predict API's)."""
    return {"video": name, "width": result.info.width, "height": result.info.height,
            "fps": round(result.info.fps, 4),
            "frames": [{"frame": i, "time_s": round(t, 4), "faces": [f.to_dict() for f in faces]}
                       for i, (t, faces) in enumerate(zip(result.times_s, result.faces))]}


def encode_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> None:
    """Encode (H, W, 3) uint8 RGB frames to an H.264 mp4 (yuv420p, ``+faststart``: plays in browsers).

    ``size`` is the (width, height) of the frames; yuv420p needs even sides, so a last odd row or
    column is left out. Writes ``path`` directly: callers wrap it in ``model.io.atomic_write``.
    """
    width, height = size[0] - size[0] % 2, size[1] - size[1] % 2
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate, options=dict(H264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """(H, W, 3) uint8 RGB frames -> an H.264 mp4 at ``path``, atomically; returns ``path``."""
    if not len(frames):
        raise ValueError(f"{path}: no frames to write")
    height, width = frames[0].shape[:2]
    return atomic_write(path, lambda tmp: encode_h264(tmp, frames, fps, (width, height)))


def annotate_video(path: str | Path, out_path: str | Path, predictor: Predictor, csv_path: str | Path | None = None,
                   json_path: str | Path | None = None, smooth: bool = True,
                   progress: Callable[[int, int], None] | None = None, name: str | None = None,
                   face_filter: FaceFilter | None = None) -> VideoResult:
    """Track landmarks through a video and write the annotated mp4 (and the CSV / JSON).

    Args:
        path: the input video (mp4, webm, mov, avi, or anything FFmpeg reads).
        out_path: the annotated H.264 mp4 to write.
        predictor: its network runs on keyframes (pass one without flip test for speed).
        csv_path, json_path: where to write the points (``None``: not written).
        smooth: One-Euro smoothing of the drawn and written points (the tracker never sees them).
        progress: called as ``progress(frames done, frames expected)`` (expected 0 when unknown).
        name: how the JSON names the video (default: the file name of ``path``).
        face_filter: which detections become tracked faces (``model.selection``; default: every
            face MTCNN returns, the predictor's ``max_faces`` most confident).

    Returns:
        The per-frame faces and times. Raises ``VideoError`` naming ``path`` when it is unreadable.
    """
    path = Path(path)
    info = probe(path)
    result = VideoResult(info)
    tracker = FaceTracker(predictor, face_filter=face_filter)
    smoother = FaceSmoother() if smooth else None
    start = time.perf_counter()

    def annotated() -> Iterator[np.ndarray]:
        for index, (t, frame) in enumerate(read_frames(path)):
            faces = tracker.update(frame)
            if smoother is not None:
                faces = smoother(faces, t if index == 0 or t > result.times_s[-1] else None)
            result.times_s.append(t)
            result.faces.append(faces)
            yield draw_faces(frame, faces)
            if progress is not None:
                progress(index + 1, info.frames)

    atomic_write(out_path, lambda tmp: encode_h264(tmp, annotated(), info.fps, (info.width, info.height)))
    if csv_path is not None:
        atomic_write_text(csv_path, csv_text(result))
    if json_path is not None:
        atomic_write_json(json_path, json_record(name or path.name, result))
    result.elapsed_s = time.perf_counter() - start
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path, metavar="video",
                        help="input videos (mp4, webm, mov, avi, ...)")
    parser.add_argument("--out", type=Path, required=True,
                        help="annotated video to write (H.264 mp4; a folder for several videos)")
    parser.add_argument("--csv", type=Path, default=None,
                        help="landmarks CSV: frame, time_s, face_id, score, x0..x97, y0..y97 (a folder for "
                             "several videos)")
    parser.add_argument("--json", type=Path, default=None, dest="json_out",
                        help="landmarks JSON: per frame the faces in the /predict schema (a folder for several)")
    # Keyframes always run without flip test (speed), so ``--no-flip`` is not offered here.
    add_model_arguments(parser, flags=("weights", "device", "max_faces", "backend"))
    add_face_filter_arguments(parser)
    parser.add_argument("--no-smooth", action="store_true", help="write the raw tracked points (no One-Euro filter)")
    return parser.parse_args(argv)


def _annotate_one(video: Path, info: VideoInfo, predictor: Predictor, outputs: BatchOutputs,
                  args: argparse.Namespace) -> None:
    """Annotate one probed input video with a progress bar and print its summary."""
    from tqdm import tqdm

    out = outputs.path(args.out, video, ".mp4")
    csv_path = outputs.path(args.csv, video, ".csv")
    json_path = outputs.path(args.json_out, video, ".json")
    with tqdm(total=info.frames or None, unit="frame", desc=video.name) as bar:
        result = annotate_video(video, out, predictor, csv_path=csv_path, json_path=json_path,
                                smooth=not args.no_smooth, name=str(video),
                                face_filter=face_filter_from_args(args),
                                progress=lambda done, total: bar.update(done - bar.n))
    faces, frames = sum(len(f) for f in result.faces), result.frames
    print(f"{video}: {counted(frames, 'frame')} ({info.width}x{info.height}, {info.fps:.2f} "
          f"frames/s), {counted(faces, 'face row')}, {frames / result.elapsed_s:.1f} frames/s "
          f"processed -> {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    several = len(args.videos) > 1 or args.out.is_dir()
    outputs = BatchOutputs(args.videos, several=several)
    predictor, failed = None, 0
    for video in args.videos:
        try:
            info = probe(video)  # before the weights load: a file that is no video is named first
            if predictor is None:
                try:
                    predictor = Predictor(weights=args.weights, device=args.device, flip_test=False,
                                          max_faces=args.max_faces, backend=args.backend)
                except (OSError, ValueError) as exc:  # missing/unreadable weights, offline, absent GPU
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
            _annotate_one(video, info, predictor, outputs, args)
        except (VideoError, OSError, ValueError) as exc:  # VideoError is a ValueError; a clash of outputs too
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"{failed} of {counted(len(args.videos), 'video')} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
