"""The WFLW browser in Debian's chromium against a live `python -m app`: no face is hidden by a
default NME bound, the metrics name their split and show only the subsets that have faces, the
comparison of two prediction files ranks the largest regression first and says when the two were
not scored alike, and predictions computed in the app are found again after a restart (before
them, the metrics say what they need)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from app.wflw_data import WFLWTestSet
from model.layout import ATTRIBUTES
from training import metrics
from training.evaluate import write_predictions
from model.formats.wflw import WFLWTree, load_wflw_txt

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000
META = {"checkpoint": "a.pth", "sha256": "a" * 64, "flip_test": True, "flip_convention": "1.x",
        "box_mode": "landmarks", "input_size": 256}
TERRIBLE = 2    # the face whose prediction is off by more than its inter-ocular distance
REGRESSED = 5   # the face that file B predicts much worse than file A


@pytest.fixture(scope="module")
def predictions(tmp_path_factory, small_wflw_root):
    """Two prediction files for the small test tree and their per-face NME (fractions)."""
    folder = tmp_path_factory.mktemp("predictions")
    samples = load_wflw_txt(WFLWTree(small_wflw_root).annotations("test"))
    gt = np.stack([s.landmarks for s in samples])
    iod = np.linalg.norm(gt[:, 60] - gt[:, 72], axis=1)
    a = gt + 0.02 * iod[:, None, None]   # every point off by 0.02 * sqrt(2) of the eye distance
    a[TERRIBLE] += 1.2 * iod[TERRIBLE]   # NME well above 100 %
    b = a.copy()
    b[REGRESSED] += 0.3 * iod[REGRESSED]  # B regresses on one face ...
    b[0] -= 0.01 * iod[0]                 # ... and improves on another
    write_predictions(folder / "a.json", samples, a, META)
    write_predictions(folder / "b.json", samples, b, dict(META, checkpoint="b.pth", sha256="b" * 64))
    write_predictions(folder / "c.json", samples, b, dict(META, checkpoint="c.pth", flip_convention="0.x",
                                                           box_mode="rect"))
    return {"a": folder / "a.json", "b": folder / "b.json", "c": folder / "c.json", "nme_a": metrics.nme(a, gt),
            "nme_b": metrics.nme(b, gt)}


@pytest.fixture(scope="module")
def page(tmp_path_factory, predictions, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server,
         browser_factory):
    db = tmp_path_factory.mktemp("compare") / "review.sqlite"
    server = app_server(["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root),
                         "--predictions", str(predictions["a"]), "--review-db", str(db), "--device", "cpu"],
                        artifacts_dir / "app-compare-tests.log").start()
    context = browser_factory().new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="WFLW browser").click()
    yield page
    context.close()
    server.stop()


def test_default_gallery_shows_faces_above_100_percent(page, predictions):
    nme = predictions["nme_a"]
    assert nme[TERRIBLE] > 1.0
    labels = page.locator("#browser-gallery .caption-label")
    expect(labels).to_have_count(len(nme), timeout=TIMEOUT_MS)
    first = labels.first
    # the whole number, rank first, and the caption is not cut on screen
    expect(first).to_have_text(f"#1 · NME {100 * nme[TERRIBLE]:.2f}% · face {TERRIBLE}")
    assert first.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    expect(page.locator("#browser-count")).to_contain_text("no upper bound")


def test_a_landmark_lists_its_worst_faces(page, predictions):
    page.locator("#browser-landmark input").fill("16")
    page.locator("#browser-landmark input").press("Enter")
    expect(page.locator("#browser-landmark-info")).to_contain_text("Landmark 16 (contour)", timeout=TIMEOUT_MS)
    rows = page.locator("#browser-landmark-faces .virtual-row")
    expect(rows).to_have_count(len(predictions["nme_a"]), timeout=TIMEOUT_MS)
    first = [c.strip() for c in rows.first.get_by_role("gridcell").all_inner_texts()]
    assert first[:2] == ["1", str(TERRIBLE)]  # every point of that face is off by 1.2 x its eye distance
    rows.nth(1).get_by_role("gridcell").nth(1).click()  # a row opens its face
    second = rows.nth(1).get_by_role("gridcell").nth(1).inner_text().strip()
    expect(page.locator("#browser-face-info")).to_contain_text(f"Face {second} ", timeout=TIMEOUT_MS)


def test_metrics_name_the_split_and_show_the_subsets_with_faces(page, small_wflw_root):
    ts = WFLWTestSet.load(small_wflw_root)
    with_faces = [name for j, name in enumerate(ATTRIBUTES) if ts.flags[:, j].any()]
    empty = [name for name in ATTRIBUTES if name not in with_faces]
    note = page.locator("#browser-metrics-note")
    expect(note).to_contain_text(f"Metrics of the test split ({len(ts)} faces)", timeout=TIMEOUT_MS)
    expect(note).to_contain_text(f"not shown, no faces here: {', '.join(empty)}")
    summary = page.locator("#browser-summary")
    expect(summary).to_contain_text("Metrics of the test split and its subsets")
    headers = [h.strip() for h in summary.locator("thead th").all_inner_texts() if h.strip()]
    assert headers == ["metric", "test", *with_faces]


def _open_compare(page) -> None:
    if not page.locator("#compare-run").is_visible():
        page.locator("#compare").get_by_text("Compare two prediction files").click()
    expect(page.locator("#compare-run")).to_be_visible()


def test_compare_ranks_the_regression_first(page, predictions):
    _open_compare(page)
    expect(page.locator("#compare-split label")).to_have_text(["test"])  # WFLW: the browser holds its test split
    page.locator("#compare-b input[type=file]").set_input_files(str(predictions["b"]))
    expect(page.locator("#compare-b")).to_contain_text(re.compile(r"b\s*\.json"), timeout=TIMEOUT_MS)  # stem and suffix may wrap apart
    page.click("#compare-run")
    summary = page.locator("#compare-summary")
    expect(summary).to_contain_text("B is worse on 1 face and better on 1", timeout=TIMEOUT_MS)
    expect(summary).to_contain_text("Split: test, 10 faces of 10")
    expect(summary).to_contain_text("A and B were scored alike: flip test on (1.x), landmarks boxes, input size 256.")
    rows = page.locator("#compare-table .virtual-row")  # Gradio 6's dataframe body: rows of grid cells
    expect(rows).to_have_count(len(predictions["nme_a"]), timeout=TIMEOUT_MS)
    cells = [c.strip() for c in rows.first.get_by_role("gridcell").all_inner_texts()]
    delta = 100 * (predictions["nme_b"][REGRESSED] - predictions["nme_a"][REGRESSED])
    assert cells[:2] == ["1", str(REGRESSED)] and float(cells[4]) == pytest.approx(delta, abs=0.006)
    last = [c.strip() for c in rows.last.get_by_role("gridcell").all_inner_texts()]
    assert last[1] == "0" and float(last[4]) < 0  # the improvement comes last
    rows.first.get_by_role("gridcell").nth(1).click()
    expect(page.locator("#compare-info")).to_contain_text(f"Face {REGRESSED} ", timeout=TIMEOUT_MS)
    expect(page.locator("#compare-view-a img")).to_be_visible()
    expect(page.locator("#compare-view-b img")).to_be_visible()


def test_compare_says_when_a_and_b_were_not_scored_alike(page, predictions, artifacts_dir):
    _open_compare(page)
    page.locator("#compare-b").get_by_role("button", name="Clear").click()  # b.json of the test above
    expect(page.locator("#compare-b")).not_to_contain_text(re.compile(r"b\s*\.json"), timeout=TIMEOUT_MS)
    page.locator("#compare-b input[type=file]").set_input_files(str(predictions["c"]))
    expect(page.locator("#compare-b")).to_contain_text(re.compile(r"c\s*\.json"), timeout=TIMEOUT_MS)  # stem and suffix may wrap apart
    page.click("#compare-run")
    summary = page.locator("#compare-summary")
    expect(summary).to_contain_text("Not scored the same way: A and B differ in flip convention (A 1.x, B 0.x); "
                                    "box mode (A landmarks, B rect).", timeout=TIMEOUT_MS)
    expect(summary).to_contain_text("c.json (c.pth)")
    summary.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-compare-conventions.png"))


def test_computed_predictions_are_found_after_a_restart(tmp_path, mean_shape_checkpoint, small_wflw_root,
                                                        artifacts_dir, app_server, browser_factory):
    db = tmp_path / "review.sqlite"
    args = ["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root), "--review-db", str(db),
            "--device", "cpu"]
    context = browser_factory().new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    server = app_server(args, artifacts_dir / "app-restart-predictions.log").start()
    try:
        page.goto(server.url, wait_until="load")
        page.get_by_role("tab", name="WFLW browser").click()
        expect(page.locator("#browser-status")).to_contain_text("no predictions yet", timeout=TIMEOUT_MS)
        note = page.locator("#browser-metrics-note")
        expect(note).to_contain_text("Metrics of the test split: they need predictions")
        expect(page.locator("#browser-summary")).to_be_hidden()
        expect(page.locator("#browser-per-landmark")).to_be_hidden()
        note.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts_dir / "app-browser-before-predictions.png"))
        page.click("#browser-compute")
        expect(page.locator("#browser-status")).to_contain_text("review.predictions.json", timeout=TIMEOUT_MS)
        expect(page.locator("#browser-summary")).to_be_visible()
        expect(note).to_contain_text("Metrics of the test split (10 faces)")
        nme_text = re.search(r"NME [\d.]+ %", page.locator("#browser-status").inner_text()).group(0)
    finally:
        server.stop()
    assert (tmp_path / "review.predictions.json").is_file()

    server = app_server(args, artifacts_dir / "app-restart-predictions-2.log").start()
    try:
        page.goto(server.url, wait_until="load")
        page.get_by_role("tab", name="WFLW browser").click()
        status = page.locator("#browser-status")
        expect(status).to_contain_text("predictions: review.predictions.json", timeout=TIMEOUT_MS)
        expect(status).to_contain_text(nme_text)
        expect(page.locator("#browser-gallery .caption-label").first).to_be_visible(timeout=TIMEOUT_MS)
    finally:
        server.stop()
        context.close()
