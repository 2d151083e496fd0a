"""Video tab callback: an uploaded video -> annotated mp4, landmarks CSV, a plot over time.

The work is ``model.video.annotate_video`` with the app's predictor without flip test (its forwards
go through the shared inference engine); this module turns the upload into that call, reports
progress, and formats the result.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from app.context import AppContext  # noqa: E402
from model.video import VIDEO_SUFFIXES, VideoError, VideoResult, annotate_video  # noqa: E402


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


def annotate(ctx: AppContext, video_path: str | None, smooth: bool, progress=gr.Progress()):
    """Upload -> (annotated video path, CSV path, figure, summary Markdown)."""
    if ctx.predictor is None:
        raise gr.Error("The 98-point model is not loaded (see the banner); videos need it.")
    if not video_path:
        raise gr.Error("Upload a video first (" + ", ".join(VIDEO_SUFFIXES) + ").")
    source = Path(video_path)
    out_path = ctx.output_file(f"{source.stem}-landmarks.mp4")
    csv_path = out_path.with_name(f"{source.stem}-landmarks.csv")

    def report(done: int, total: int) -> None:
        progress((done, total) if total else None, desc="frames", unit="frames")

    try:
        result = annotate_video(source, out_path, ctx.live_predictor, csv_path=csv_path, smooth=bool(smooth),
                                progress=report)
    except VideoError as exc:
        raise gr.Error(str(exc).replace(str(source), source.name)) from exc
    figure = timeline_figure(result)
    with_face = sum(1 for f in result.faces if f)
    summary = (f"**{result.frames}** frames ({result.info.width}x{result.info.height}, "
               f"{result.info.fps:.2f} frames/s, {result.frames / result.info.fps:.1f} s) · a face in "
               f"**{with_face}** · processed at **{result.frames / result.elapsed_s:.1f}** frames/s")
    return str(out_path), str(csv_path), figure, summary
