"""Video tab callback (``app.tabs.video`` lays the tab out; the work is ``model.video``): an
uploaded video -> annotated mp4, landmarks CSV, a plot over time.

The work is ``model.video.annotate_video`` with the app's predictor without flip test (its forwards
go through the shared inference engine); this module turns the upload into that call, reports
progress, and formats the result.

A job belongs to the page that started it: when that page goes (closed, reloaded), Gradio calls
``page_closed`` (``demo.unload``) and the job stops before its next frame, so the next user does
not wait for frames nobody will see. A new job first clears the previous job's outputs.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from app import upload  # noqa: E402
from app.thresholds import face_filter  # noqa: E402
from app.context import AppContext  # noqa: E402
from model.selection import DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE, FaceFilter  # noqa: E402
from model.video import VIDEO_SUFFIXES, VideoError, VideoResult, annotate_video  # noqa: E402

log = logging.getLogger(__name__)

STARTED = "Processing the video… (the previous result is cleared; closing the page stops the job)"


class JobCancelled(Exception):
    """The page that started a video job went away."""


@dataclass
class VideoJob:
    """One running job: its page's session, frames done, and when it was asked to stop."""

    session: str
    frames_done: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_at: int | None = None  # frames done when the page went


class VideoJobs:
    """The running video jobs by page (Gradio session hash), and the last finished ones (for tests
    and the log): thread-safe, shared by every page of the app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: dict[str, VideoJob] = {}
        self.finished: list[VideoJob] = []

    def start(self, session: str) -> VideoJob:
        job = VideoJob(session)
        with self._lock:
            self.running[session] = job
        return job

    def finish(self, job: VideoJob) -> None:
        with self._lock:
            if self.running.get(job.session) is job:
                del self.running[job.session]
            self.finished = (self.finished + [job])[-20:]

    def cancel(self, session: str) -> VideoJob | None:
        """Ask the job of ``session`` (if any) to stop before its next frame."""
        with self._lock:
            job = self.running.get(session)
            if job is not None and not job.cancel.is_set():
                job.cancelled_at = job.frames_done
                job.cancel.set()
        return job


JOBS = VideoJobs()


def timeline_figure(result: VideoResult):
    """Two panels over time: faces per frame, and each face's score (by face id)."""
    fig, (ax_count, ax_score) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, constrained_layout=True)
    counts = [len(f) for f in result.faces]
    ax_count.step(result.times_s, counts, where="post", color="tab:blue")
    ax_count.set_ylabel("faces")
    ax_count.set_ylim(0, max(counts, default=0) + 1)
    ax_count.yaxis.get_major_locator().set_params(integer=True)
    series: dict = {}
    for t, faces in zip(result.times_s, result.faces):
        for face in faces:
            series.setdefault(face.face_id, ([], []))
            series[face.face_id][0].append(t)
            series[face.face_id][1].append(float(face.score))
    for face_id, (ts, scores) in sorted(series.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        ax_score.plot(ts, scores, ".", markersize=3, label=f"face {face_id}")
    if series:
        ax_score.legend(loc="lower right", fontsize="small")
    ax_score.set_ylabel("score")
    ax_score.set_xlabel("time (s)")
    ax_score.set_ylim(0.0, 1.02)
    return fig


def _summary(result: VideoResult) -> str:
    with_face = sum(1 for f in result.faces if f)
    return (f"**{upload.counted(result.frames, 'frame')}** ({result.info.width}x{result.info.height}, "
            f"{result.info.fps:.2f} frames/s, {result.frames / result.info.fps:.1f} s) · a face in "
            f"**{with_face}** · processed at **{result.frames / result.elapsed_s:.1f}** frames/s")


def _run(ctx: AppContext, source: Path, smooth: bool, limits: FaceFilter, job: VideoJob, progress) -> tuple:
    """The job itself: (video path, CSV path, figure, summary); ``JobCancelled`` when its page went."""
    out_path = ctx.output_file(f"{source.stem}-landmarks.mp4")
    csv_path = out_path.with_name(f"{source.stem}-landmarks.csv")

    def report(done: int, total: int) -> None:
        if job.cancel.is_set():
            raise JobCancelled(f"page closed after {upload.counted(job.frames_done, 'frame')}")
        job.frames_done = done
        progress((done, total) if total else None, desc="frames", unit="frames")

    try:
        result = annotate_video(source, out_path, ctx.live_predictor, csv_path=csv_path, smooth=smooth,
                                progress=report, face_filter=limits)
    except VideoError as exc:
        raise gr.Error(str(exc).replace(str(source), source.name)) from exc
    return str(out_path), str(csv_path), timeline_figure(result), _summary(result)


def annotate(ctx: AppContext, video_path: str | None, smooth: bool, request: gr.Request,
             min_score: float = DEFAULT_MIN_SCORE, min_size: float = DEFAULT_MIN_SIZE, progress=gr.Progress()):
    """Upload -> first the cleared outputs, then (annotated video path, CSV path, figure, summary).

    ``min_score`` and ``min_size`` choose which detections become tracked faces, as in the Upload
    tab (``app.thresholds.face_filter``). A generator, so that the previous result leaves the screen as
    soon as the job starts.
    """
    if ctx.predictor is None:
        raise gr.Error("The 98-point model is not loaded (see the banner); videos need it.")
    if not video_path:
        raise gr.Error("Upload a video first (" + ", ".join(VIDEO_SUFFIXES) + ").")
    limits = face_filter(ctx, min_score, min_size)
    yield None, None, None, STARTED
    job = JOBS.start(getattr(request, "session_hash", None) or "")
    try:
        yield _run(ctx, Path(video_path), bool(smooth), limits, job, progress)
    except JobCancelled as exc:
        log.info("video job of %s stopped: %s", Path(video_path).name, exc)
    finally:
        JOBS.finish(job)


def page_closed(request: gr.Request) -> None:
    """``demo.unload``: the page went; stop its video job, if one is running."""
    job = JOBS.cancel(getattr(request, "session_hash", None) or "")
    if job is not None:
        log.info("page closed: video job cancelled after %d frames", job.frames_done)
