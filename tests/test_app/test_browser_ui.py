"""The four tabs end to end in Debian's chromium (Playwright) against a live `python -m app`."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from model.image import read_image
from model.pipeline import Predictor
from training import metrics
from model.formats.wflw import WFLWTree, crop_box, load_wflw_txt, resolve_image

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 800}  # the size the screenshots are judged at
ASSETS = Path(__file__).resolve().parents[2] / "assets"  # public-domain photos: the only ones in docs/screenshots
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def studio(tmp_path_factory, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server):
    db = tmp_path_factory.mktemp("review") / "review.sqlite"
    args = ["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root), "--review-db", str(db),
            "--device", "cpu"]
    server = app_server(args, artifacts_dir / "app-browser-tests.log").start()
    state = {"server": server, "args": args, "db": db, "cls": app_server}
    yield state
    state["server"].stop()


@pytest.fixture(scope="module")
def page_of(browser_factory):
    browser = browser_factory()
    pages = []

    def open_page(url: str):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        pages.append(context)
        page.goto(url, wait_until="load")
        page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
        return page

    yield open_page
    for c in pages:
        c.close()


def _tab(page, name: str) -> None:
    tab = page.get_by_role("tab", name=name)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def test_upload_flow(studio, page_of, artifacts_dir, tmp_path):
    page = page_of(studio["server"].url)
    # Toggling the labels before any upload is a quiet no-op (no "Upload an image first." pop-up).
    # (A pop-up would stay 10 s: checked after the run below, which starts after the toggles' events.)
    page.get_by_label("Show landmark indices").first.check()
    page.get_by_label("Show landmark indices").first.uncheck()

    # The Examples panel lists the photos shipped in assets/ (README.md is not an image).
    examples = page.locator("#upload-examples")
    assert "astronaut.png" in examples.inner_text() and "grace_hopper.jpg" in examples.inner_text()
    assert "README" not in examples.inner_text()
    examples.get_by_text("astronaut.png").click()
    page.locator("#upload-image [aria-label='astronaut.png']").wait_for(timeout=TIMEOUT_MS)  # stem and suffix are two spans
    page.click("#upload-run")
    page.locator("#upload-summary").get_by_text("1 face", exact=True).wait_for(timeout=TIMEOUT_MS)
    page.locator("#upload-annotated img").wait_for(timeout=TIMEOUT_MS)
    page.locator("#upload-crops img").first.wait_for(timeout=TIMEOUT_MS)
    expect(page.locator(".toast-body")).to_have_count(0)
    table = page.locator("#upload-table").inner_text()
    assert "score" in table and "NME" in table

    # The JSON download is named after the image and holds its record.
    link = page.locator("#upload-json-file a").first
    link.wait_for(timeout=TIMEOUT_MS)
    name = page.locator("#upload-json-file [aria-label='astronaut.json']")
    assert name.locator(".stem").is_visible() and name.locator(".stem").bounding_box()["width"] > 20  # not cut to ".json"
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == "astronaut.json"
    record = json.loads(Path(info.value.path()).read_text())
    assert record["image"] == "astronaut.png" and len(record["faces"]) == 1
    page.screenshot(path=str(artifacts_dir / "app-upload.png"), full_page=True)  # the photo and the results


def _y4m_from_photo(photo: Path, out: Path, frames: int = 10) -> Path:
    """A 640x480 I420 YUV4MPEG2 clip of a real photo (letterboxed), for chromium's fake camera."""
    image = read_image(photo)
    width = min(640, round(480 * image.shape[1] / image.shape[0]))  # keep the photo's aspect ratio
    left = (640 - width) // 2
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, left:left + width] = cv2.resize(image, (width, 480), interpolation=cv2.INTER_AREA)
    yuv = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420)
    with open(out, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv.tobytes())
    return out


def test_webcam_stream(studio, browser_factory, shared_data, tmp_path, artifacts_dir):
    clip = _y4m_from_photo(ASSETS / "grace_hopper.jpg", tmp_path / "face.y4m")
    browser = browser_factory(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                               f"--use-file-for-fake-video-capture={clip}"])
    context = browser.new_context(viewport=VIEWPORT, permissions=["camera"])
    page = context.new_page()
    page.goto(studio["server"].url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    _tab(page, "Webcam")
    page.locator("#webcam-live .lv-start").click()
    readout = page.locator("#webcam-readout")
    readout.get_by_text("frames/s shown").wait_for(timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 60
    text = readout.inner_text()
    # wait for a face and a measured frame rate (the first frames read "0.0 frames/s")
    while time.monotonic() < deadline and not (re.search(r"[1-9]\d* face", text)
                                               and not re.search(r"\b0\.0 frames/s", text)):
        time.sleep(1)
        text = readout.inner_text()
    assert re.search(r"\d+ ms glass to glass", text) and "640x480" in text
    assert re.search(r"[1-9]\d* face", text), text
    page.screenshot(path=str(artifacts_dir / "app-webcam.png"))
    context.close()


def _expected_order(root: Path, checkpoint: Path) -> tuple[list[int], np.ndarray]:
    """Worst-first face order computed here, independently of the app."""
    tree = WFLWTree(root)
    samples = load_wflw_txt(tree.annotations("test"))
    predictor = Predictor(weights=checkpoint, device="cpu")
    pred = np.stack([predictor.predict_boxes(read_image(resolve_image(tree.images, s.image)),
                                             crop_box(s, "landmarks")[None])[0] for s in samples])
    nme = metrics.nme(pred, np.stack([s.landmarks for s in samples]))
    return [int(i) for i in np.argsort(-nme, kind="stable")], nme


def _captions(page) -> list[tuple[int, float, int]]:
    labels = page.locator("#browser-gallery .caption-label")
    out = []
    for i in range(labels.count()):
        m = re.match(r"#(\d+) · NME ([\d.]+)% · face (\d+)", labels.nth(i).text_content().strip())
        assert m, labels.nth(i).text_content()
        out.append((int(m.group(1)), float(m.group(2)), int(m.group(3))))
    return out


def test_wflw_browser_ranks_by_nme(studio, page_of, small_wflw_root, mean_shape_checkpoint, artifacts_dir):
    order, nme = _expected_order(small_wflw_root, mean_shape_checkpoint)
    page = page_of(studio["server"].url)
    _tab(page, "WFLW browser")
    page.click("#browser-compute")
    page.locator("#browser-count").get_by_text("worst first").wait_for(timeout=TIMEOUT_MS)
    page.locator("#browser-gallery .caption-label").first.wait_for(timeout=TIMEOUT_MS)
    captions = _captions(page)
    assert [c[2] for c in captions] == order
    assert [c[1] for c in captions] == sorted((c[1] for c in captions), reverse=True)
    np.testing.assert_allclose([c[1] for c in captions], 100 * nme[order], atol=0.006)
    assert "NME (%)" in page.locator("#browser-summary").inner_text()

    # Filter: the real mmpose faces carry the "occlusion" flag in the test tree.
    page.locator("#browser-gallery .caption-label").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("combobox", name="Subset").click()
    page.get_by_role("option", name="occlusion").click()
    page.locator("#browser-count").get_by_text("(occlusion").wait_for(timeout=TIMEOUT_MS)
    expect(page.locator("#browser-gallery .caption-label")).to_have_count(4, timeout=TIMEOUT_MS)
    filtered = _captions(page)
    assert len(filtered) == 4 and [c[2] for c in filtered] == [i for i in order if i >= len(order) - 4]

    page.locator("#browser-gallery .gallery-item").first.click()
    page.locator("#browser-face-info").get_by_text("Attributes").wait_for(timeout=TIMEOUT_MS)
    info = page.locator("#browser-face-info").inner_text()
    assert f"Face {filtered[0][2]}" in info and "occlusion" in info and "rank" in info
    page.locator("#browser-face img").wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "app-browser.png"))


def _reviewer(page, name: str) -> None:
    box = page.locator("#review-reviewer input, #review-reviewer textarea").first
    box.fill(name)
    box.press("Enter")
    expect(page.locator("#review-progress")).to_contain_text(f"{name}:", timeout=TIMEOUT_MS)


def _open_face(page, index: int) -> None:
    page.locator("#review-index input").fill(str(index))
    page.click("#review-open")
    page.locator("#review-info").get_by_text(f"Face {index}").wait_for(timeout=TIMEOUT_MS)
    expect(page.locator("#review-editor .le-svg")).to_be_visible(timeout=TIMEOUT_MS)


def test_review_survives_restart(studio, page_of, small_wflw_root, artifacts_dir):
    page = page_of(studio["server"].url)
    _tab(page, "Review")
    _reviewer(page, "ana")
    _open_face(page, 7)
    page.locator("#review-verdict").get_by_text("annotation wrong").click()
    expect(page.locator("#review-progress")).to_contain_text("ana: 1 /", timeout=TIMEOUT_MS)
    page.locator("#review-note textarea").fill("chin point sits on the collar")
    page.locator("#review-note textarea").press("Tab")  # blur saves the note
    page.locator("#review-status").get_by_text("Note saved").wait_for(timeout=TIMEOUT_MS)
    chin = page.locator("#review-editor .le-hit[data-i='16']").bounding_box()
    x, y = chin["x"] + chin["width"] / 2, chin["y"] + chin["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 10, y + 25, steps=4)
    page.mouse.up()
    page.locator("#review-status").get_by_text("Point 16 of face 7").wait_for(timeout=TIMEOUT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts_dir / "app-review.png"))

    # Restart the server on the same database: everything is shown again.
    studio["server"].stop()
    studio["server"] = studio["cls"](studio["args"], artifacts_dir / "app-browser-tests-restart.log").start()
    page = page_of(studio["server"].url)
    _tab(page, "Review")
    page.locator("#review-progress").get_by_text("all reviewers: 1 /").wait_for(timeout=TIMEOUT_MS)
    _reviewer(page, "ana")
    _open_face(page, 7)
    expect(page.locator("#review-editor .le-fixed[data-i='16']")).to_have_count(1)
    assert page.locator("#review-note textarea").input_value() == "chin point sits on the collar"
    assert page.locator("#review-verdict input[value='annotation wrong']").is_checked()

    page.click("#review-export")
    links = page.locator("#review-exports a")
    links.first.wait_for(timeout=TIMEOUT_MS)
    downloads = {}
    for i in range(links.count()):
        with page.expect_download() as info:
            links.nth(i).click()
        d = info.value
        downloads[d.suggested_filename] = Path(d.path()).read_text()
    data = json.loads(downloads["review.json"])
    rows = data["faces"]
    assert len(rows) == 1 and rows[0]["face_index"] == 7 and rows[0]["verdict"] == "annotation wrong"
    assert rows[0]["reviewer"] == "ana" and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", rows[0]["updated"])
    assert rows[0]["note"] == "chin point sits on the collar" and list(rows[0]["corrections"]) == ["16"]
    assert data["provenance"]["box_mode"] == "landmarks" and data["provenance"]["flip_test"] is True
    assert "annotation wrong" in downloads["review.csv"] and "chin point sits on the collar" in downloads["review.csv"]
    fx, fy = rows[0]["corrections"]["16"]
    assert f"16 {fx:.3f} {fy:.3f}" in downloads["review.csv"]  # the correction's coordinates, not only its index
    corrected = downloads["list_98pt_rect_attr_test_corrected.txt"].splitlines()
    original = load_wflw_txt(WFLWTree(small_wflw_root).annotations("test"))
    assert len(corrected) == len(original)
    x, y = (float(v) for v in corrected[7].split()[32:34])
    assert [x, y] == pytest.approx(rows[0]["corrections"]["16"], abs=1e-3)
    assert (x, y) != pytest.approx(tuple(original[7].landmarks[16]), abs=0.5)
