"""The Video tab (callbacks in ``app.video``): a video in, the annotated mp4, a CSV of the points
and a plot over time out; the job stops when its page goes (``demo.unload``) and clears the old
result when it starts."""
from __future__ import annotations

import gradio as gr

from app import video
from app.context import AppContext
from app.serving import VIDEO, concurrency
from app.tabs import bind
from app.thresholds import face_filter_controls


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    """Lay out and wire the Video tab (and the page's unload, which stops its job)."""
    with gr.Tab("Video", id="video"):
        gr.Markdown("Upload a video (" + ", ".join(video.VIDEO_SUFFIXES) + "): every frame gets landmarks "
                    "(the webcam's tracker, no flip test), and you get the annotated video (H.264 mp4), "
                    "a CSV of the points per face and frame, and a plot over time.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                source = gr.File(label="Video", file_types=list(video.VIDEO_SUFFIXES), type="filepath", height=120,
                                 elem_id="video-in")
                smooth = gr.Checkbox(label="Smooth points (One-Euro filter)", value=True)
                min_score, min_size = face_filter_controls("video")
                run = gr.Button("Annotate video", variant="primary", elem_id="video-run")
                csv = gr.File(label="Landmarks CSV", height=100, elem_id="video-csv")
                summary = gr.Markdown(elem_id="video-summary")
            with gr.Column(scale=2):
                out = gr.Video(label="Annotated video", interactive=False, height=420, elem_id="video-out")
                plot = gr.Plot(label="Faces per frame and score over time", elem_id="video-plot")
        # One progress display, on the video: not one per output, nor one over the summary's text.
        run.click(bind(video.annotate, ctx), inputs=[source, smooth, min_score, min_size],
                  outputs=[out, csv, plot, summary], api_name="annotate_video", show_progress_on=[out],
                  **concurrency(VIDEO))
    demo.unload(video.page_closed)
