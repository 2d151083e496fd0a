"""The WFLW browser on a dataset of one's own photos in Debian's chromium, at 1280x800 and 390x844:
before predictions the metrics say what they need; after "Compute predictions" they are of the split
the app holds ("all"), by split, with no attribute-subset columns; Compare takes a Split and says
when A and B were made for different splits or under different flip conventions."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.wflw_data import WFLWTestSet
from tests.helpers import shifted
from training.evaluate import write_predictions

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(own_photo_dataset, standin_checkpoint, tmp_path_factory, artifacts_dir, app_server):
    db = tmp_path_factory.mktemp("splits") / "review.sqlite"
    started = app_server(["--wflw-root", str(own_photo_dataset), "--review-db", str(db), "--weights",
                          str(standin_checkpoint), "--device", "cpu"], artifacts_dir / "app-browser-splits.log").start()
    yield started
    started.stop()


def _browser_tab(browser, url: str, viewport: dict):
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    tab = page.get_by_role("tab", name="WFLW browser")
    if tab.count() and tab.is_visible():
        tab.click()
    else:  # on a phone the later tabs sit behind the "…" overflow button
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text="WFLW browser").click()
    expect(page.locator("#browser-status")).to_contain_text("pre-annotated", timeout=TIMEOUT_MS)
    return page


def _before_predictions(page) -> None:
    note = page.locator("#browser-metrics-note")
    expect(note).to_contain_text("Metrics of the all split: they need predictions", timeout=TIMEOUT_MS)
    for panel in ("Table", "CED curve", "Per-landmark error", "Landmark", "Gallery"):
        expect(note).to_contain_text(panel)
    expect(note).to_contain_text("Compute predictions")
    expect(page.locator("#browser-summary")).to_be_hidden()
    expect(page.locator("#browser-ced")).to_be_hidden()
    expect(page.locator("#browser-landmark-info")).to_contain_text("needs predictions")


def test_metrics_and_compare_name_the_split(server, own_photo_dataset, browser_factory, artifacts_dir, tmp_path):
    ts = WFLWTestSet.load(own_photo_dataset)
    browser = browser_factory()
    phone = _browser_tab(browser, server.url, PHONE)
    _before_predictions(phone)
    phone.locator("#browser-metrics-note").scroll_into_view_if_needed()
    phone.screenshot(path=str(artifacts_dir / "phone-browser-own-before.png"))

    page = _browser_tab(browser, server.url, DESKTOP)
    _before_predictions(page)
    page.locator("#browser-metrics-note").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-browser-own-before.png"))
    page.click("#browser-compute")
    note = page.locator("#browser-metrics-note")
    expect(note).to_contain_text(f"Metrics of the all split ({len(ts)} faces)", timeout=TIMEOUT_MS)
    expect(note).to_contain_text("no WFLW attribute flags, so there are no subset columns")
    status = page.locator("#browser-status")
    expect(status).not_to_contain_text("no NME to rank by")
    expect(status).to_contain_text("not against an independent ground truth")
    summary = page.locator("#browser-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Metrics of the all split by split")
    headers = [h.strip() for h in summary.locator("thead th").all_inner_texts() if h.strip()]
    assert headers == ["metric", "all", "test", "train"], headers
    faces = [c.strip() for c in summary.locator(".virtual-row").last.get_by_role("gridcell").all_inner_texts()]
    assert [float(v) for v in faces[1:4]] == [len(ts), ts.num_test, len(ts) - ts.num_test]
    expect(page.locator("#browser-ced")).to_be_visible()
    note.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-browser-own-metrics.png"))

    # Compare on the test split: A the predictions just computed (split all, 1.x), B a file made for the
    # test split under the 0.x flip convention.
    test = ts.samples[: ts.num_test]
    write_predictions(tmp_path / "b.json", test, shifted(test, [0.05] * len(test)),
                      {"checkpoint": "b.pth", "sha256": "", "flip_test": True, "flip_convention": "0.x",
                       "box_mode": "landmarks", "input_size": 64, "split": "test"})
    page.locator("#compare").get_by_text("Compare two prediction files").click()
    expect(page.locator("#compare-split label")).to_have_text(["test", "train", "all"])
    page.locator("#compare-split").get_by_text("test", exact=True).click()
    page.locator("#compare-b input[type=file]").set_input_files(str(tmp_path / "b.json"))
    expect(page.locator("#compare-b")).to_contain_text(re.compile(r"b\s*\.json"), timeout=TIMEOUT_MS)  # stem and suffix may wrap apart
    page.click("#compare-run")
    compared = page.locator("#compare-summary")
    expect(compared).to_contain_text(f"Split: test, {ts.num_test} face", timeout=TIMEOUT_MS)
    expect(compared).to_contain_text("Not scored the same way: A and B differ in flip convention (A 1.x, B 0.x)")
    expect(compared).to_contain_text("The splits differ: A was made for the all split, B for the test split")
    expect(page.locator("#compare-table .virtual-row")).to_have_count(ts.num_test, timeout=TIMEOUT_MS)
    compared.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-compare-own.png"))
    # B made for the test split cannot be read for the train split: said, and nothing else changes
    page.locator("#compare-split").get_by_text("train", exact=True).click()
    page.click("#compare-run")
    expect(page.locator(".toast-body").first).to_contain_text("b.json holds predictions for the test split",
                                                              timeout=TIMEOUT_MS)
    expect(compared).to_contain_text("Split: test")

    phone.reload(wait_until="load")
    phone = _browser_tab(browser, server.url, PHONE)
    expect(phone.locator("#browser-summary")).to_be_visible(timeout=TIMEOUT_MS)
    phone.locator("#browser-metrics-note").scroll_into_view_if_needed()
    phone.screenshot(path=str(artifacts_dir / "phone-browser-own-metrics.png"))
    phone.locator("#compare").get_by_text("Compare two prediction files").click()
    expect(phone.locator("#compare-split")).to_be_visible()
    phone.locator("#compare-split").scroll_into_view_if_needed()
    phone.screenshot(path=str(artifacts_dir / "phone-compare-own.png"))
