"""The review tab's point editor in Debian's chromium against a live `python -m app`: nothing is
stored by a stray click or an early verdict, a dragged point is stored where it was dropped at two
zoom levels, undo and redo restore, and the hotkeys work. The store is read back with SQLite."""
from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from app.review_store import VERDICTS, ReviewStore
from training.evaluate import write_predictions
from model.formats.wflw import WFLWTree, load_wflw_txt

pytestmark = pytest.mark.browser
TIMEOUT_MS = 60_000
FACE = 7          # a real mmpose WFLW face of the small test tree
POINT = 16       # its chin point
HOTKEY_FACE = 2  # a synthetic face nothing else touches before the hotkey test
MOVE_FACE = 8    # another real face, for the progress and status test
REVIEWER = "ana"


def _predictions(root, path):
    """Ground truth shifted by a few pixels per face (face i by i + 1 px): NME order is known."""
    samples = load_wflw_txt(WFLWTree(root).annotations("test"))
    pred = np.stack([s.landmarks + (i + 1.0) for i, s in enumerate(samples)])
    meta = {"checkpoint": "shifted.pth", "sha256": "0" * 64, "flip_test": True, "flip_convention": "1.x",
            "box_mode": "landmarks", "input_size": 256}
    write_predictions(path, samples, pred, meta)
    return samples, pred


@pytest.fixture(scope="module")
def review_app(tmp_path_factory, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server):
    work = tmp_path_factory.mktemp("editor")
    samples, pred = _predictions(small_wflw_root, work / "predictions.json")
    db = work / "review.sqlite"
    server = app_server(["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root),
                         "--predictions", str(work / "predictions.json"), "--review-db", str(db), "--device", "cpu"],
                        artifacts_dir / "app-editor-tests.log").start()
    yield {"server": server, "db": db, "samples": samples}
    server.stop()


@pytest.fixture(scope="module")
def page(review_app, browser_factory):
    context = browser_factory().new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(review_app["server"].url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Review").click()
    expect(page.locator("#review-editor .le-empty")).to_be_visible(timeout=TIMEOUT_MS)
    yield page
    context.close()


def _stored(app, face: int = FACE) -> tuple[dict, list]:
    """(what the reviewer stored for ``face``, the action log), read from the database file."""
    store = ReviewStore(app["db"])
    try:
        return store.get(face, app["samples"][face].image, reviewer=REVIEWER), store.actions()
    finally:
        store.close()


def _open(page, index: int) -> None:
    """Open a face and wait until the editor shows it (a new value loaded, whatever face was open)."""
    loads = page.locator("#review-editor .le-host").get_attribute("data-loads")
    page.locator("#review-index input").fill(str(index))
    page.click("#review-open")
    expect(page.locator("#review-editor .le-host")).not_to_have_attribute("data-loads", loads, timeout=TIMEOUT_MS)
    expect(page.locator("#review-info")).to_contain_text(f"Face {index} ", timeout=TIMEOUT_MS)
    expect(page.locator(f"#review-editor .le-hit[data-i='{POINT}']")).to_have_count(1, timeout=TIMEOUT_MS)
    page.locator("#review-editor svg.le-svg").scroll_into_view_if_needed()


# Records, at the instant of the drop (capture phase, before the editor's own handler), where the
# pointer was and where the SVG and its viewBox were: a page that moves or resizes while the drag
# runs (a late update above it on a loaded machine) cannot skew the expectation.
RECORD_DROP_JS = """() => {
  window.__drop = null;
  window.addEventListener('pointerup', e => {
    const svg = document.querySelector('#review-editor svg.le-svg'), r = svg.getBoundingClientRect();
    window.__drop = {sx: e.clientX, sy: e.clientY, viewBox: svg.getAttribute('viewBox'),
                     x: r.left, y: r.top, width: r.width, height: r.height};
  }, {capture: true, once: true});
}"""


def _screen_to_image(drop: dict) -> tuple[float, float]:
    """Image pixel under the recorded drop, from the SVG's viewBox and on-screen box (square, 'meet')."""
    vx, vy, vw, vh = (float(v) for v in drop["viewBox"].split())
    assert abs(vw - vh) < 1e-9 and abs(drop["width"] - drop["height"]) < 1.0
    return vx + (drop["sx"] - drop["x"]) * vw / drop["width"], vy + (drop["sy"] - drop["y"]) * vh / drop["height"]


def _centre(page, point: int) -> tuple[float, float]:
    b = page.locator(f"#review-editor .le-hit[data-i='{point}']").bounding_box()
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


def _drag(page, point: int, dx: int, dy: int) -> tuple[float, float]:
    """Drag a point by (dx, dy) screen pixels to a whole-pixel drop, and wait until the server has
    answered (the status line changes); returns the drop in image pixels."""
    status = page.locator("#review-status").inner_text()
    x, y = _centre(page, point)
    x, y = round(x), round(y)
    page.evaluate(RECORD_DROP_JS)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=3)
    page.mouse.move(x + dx, y + dy, steps=3)
    page.mouse.up()
    drop = page.evaluate("() => window.__drop")
    assert (drop["sx"], drop["sy"]) == (x + dx, y + dy)
    expect(page.locator("#review-status")).not_to_have_text(status, timeout=TIMEOUT_MS)
    return _screen_to_image(drop)


def test_stray_click_and_early_verdict_store_nothing(review_app, page):
    # No face open: the verdict radio and the note are disabled, and hotkeys do nothing.
    expect(page.locator(f"#review-verdict input[value='{VERDICTS[1]}']")).to_be_disabled()
    expect(page.locator("#review-note textarea")).to_be_disabled()
    page.locator("body").press("2")
    page.locator("#review-reviewer input, #review-reviewer textarea").first.fill(REVIEWER)
    page.locator("#review-reviewer input, #review-reviewer textarea").first.press("Enter")
    expect(page.locator("#review-progress")).to_contain_text(f"{REVIEWER}: 0 /", timeout=TIMEOUT_MS)
    expect(page.locator(f"#review-verdict input[value='{VERDICTS[1]}']")).to_be_disabled()

    _open(page, FACE)
    expect(page.locator(f"#review-verdict input[value='{VERDICTS[1]}']")).to_be_enabled()
    assert page.locator("#review-editor .le-status").inner_text().startswith(f"Face {FACE}: click")  # nothing selected
    # A click on empty image (a corner of the crop) and a click on a point without moving it.
    svg = page.locator("#review-editor svg.le-svg").bounding_box()
    page.mouse.click(svg["x"] + 8, svg["y"] + 8)
    x, y = _centre(page, POINT)
    page.mouse.click(x, y)
    expect(page.locator("#review-editor .le-status")).to_contain_text(f"Point {POINT} (contour)")
    stored, actions = _stored(review_app)
    assert stored == {"verdict": None, "note": "", "corrections": {}} and actions == []


@pytest.mark.parametrize("wheel_steps", [0, 4])
def test_dragged_point_is_stored_where_dropped(review_app, page, wheel_steps):
    _open(page, FACE)  # reopening resets the view to the whole face
    svg = page.locator("#review-editor svg.le-svg")
    width = float(svg.get_attribute("viewBox").split()[2])
    page.mouse.move(*_centre(page, POINT))
    for _ in range(wheel_steps):  # zoom in around the point (x 1.25 per step)
        page.mouse.wheel(0, -100)
    expect(svg).to_have_attribute("viewBox", re.compile(r"\S+ \S+ " + re.escape(f"{width / 1.25 ** wheel_steps:.2f}")[:-1]))
    dropped = _drag(page, POINT, 23, -17)
    expect(page.locator("#review-status")).to_contain_text(f"Point {POINT} of face {FACE} moved", timeout=TIMEOUT_MS)
    stored, _ = _stored(review_app)
    assert stored["corrections"][POINT] == pytest.approx(dropped, abs=0.5)
    # the corrected point is drawn as a diamond in its region's colour
    expect(page.locator(f"#review-editor .le-fixed[data-i='{POINT}']")).to_have_count(1)


def test_undo_redo_and_escape(review_app, page):
    _open(page, FACE)
    before, _ = _stored(review_app)
    first = _drag(page, 40, 15, 10)
    expect(page.locator("#review-status")).to_contain_text("Point 40 of face 7 moved", timeout=TIMEOUT_MS)
    second = _drag(page, 40, -12, 6)
    expect(page.locator("#review-status")).to_contain_text(f"({second[0]:.1f}, {second[1]:.1f})", timeout=TIMEOUT_MS)

    page.locator("body").press("z")  # back to the first drop
    expect(page.locator("#review-status")).to_contain_text(f"({first[0]:.1f}, {first[1]:.1f})", timeout=TIMEOUT_MS)
    assert _stored(review_app)[0]["corrections"][40] == pytest.approx(first, abs=0.5)
    page.locator("body").press("z")  # before any move: no correction at all
    expect(page.locator("#review-status")).to_contain_text("Point 40 of face 7 is back", timeout=TIMEOUT_MS)
    assert 40 not in _stored(review_app)[0]["corrections"]
    page.locator("body").press("Shift+Z")  # redo
    expect(page.locator("#review-status")).to_contain_text(f"({first[0]:.1f}, {first[1]:.1f})", timeout=TIMEOUT_MS)
    assert _stored(review_app)[0]["corrections"][40] == pytest.approx(first, abs=0.5)

    # Esc during a drag puts the point back and stores nothing.
    count = len(_stored(review_app)[1])
    x, y = _centre(page, 50)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 30, steps=4)
    page.keyboard.press("Escape")
    page.mouse.up()
    assert _centre(page, 50) == pytest.approx((x, y), abs=0.5)
    stored, actions = _stored(review_app)
    assert len(actions) == count and 50 not in stored["corrections"]
    assert before["corrections"].keys() <= stored["corrections"].keys()


def _progress(page) -> int:
    """The reviewer's count on the progress line ("ana: 3 / 10 faces reviewed ...")."""
    text = page.locator("#review-progress").inner_text()
    return int(re.search(rf"{REVIEWER}: (\d+) /", text).group(1))


def _expect_progress(page, count: int) -> None:
    expect(page.locator("#review-progress")).to_contain_text(f"{REVIEWER}: {count} /", timeout=TIMEOUT_MS)


def test_hotkeys(review_app, page):
    samples = review_app["samples"]
    face = HOTKEY_FACE
    _open(page, face)
    reviewed = _progress(page)  # FACE already counts: its points were moved above
    page.locator("body").press("2")
    _expect_progress(page, reviewed + 1)
    assert _stored(review_app, face)[0]["verdict"] == VERDICTS[1]
    expect(page.locator(f"#review-verdict input[value='{VERDICTS[1]}']")).to_be_checked()
    page.click("#review-clear-verdict")  # a verdict can be cleared
    _expect_progress(page, reviewed)
    assert _stored(review_app, face)[0]["verdict"] is None
    page.locator("body").press("4")
    _expect_progress(page, reviewed + 1)

    # n / p follow the browser's order, worst NME first: the shift is i + 1 px, so the worst face is
    # the one with the largest shift relative to its inter-ocular distance.
    nme = [np.mean(np.linalg.norm(np.full((98, 2), i + 1.0), axis=1)) /
           np.linalg.norm(s.landmarks[60] - s.landmarks[72]) for i, s in enumerate(samples)]
    order = [int(i) for i in np.argsort(-np.asarray(nme), kind="stable")]
    at = order.index(face)
    page.locator("body").press("n")
    expect(page.locator("#review-info")).to_contain_text(f"Face {order[(at + 1) % len(order)]} ", timeout=TIMEOUT_MS)
    page.locator("body").press("p")
    expect(page.locator("#review-info")).to_contain_text(f"Face {face} ", timeout=TIMEOUT_MS)
    page.locator("body").press("p")
    before = order[at - 1]
    expect(page.locator("#review-info")).to_contain_text(f"Face {before} ", timeout=TIMEOUT_MS)
    # u: the next face in the order that this reviewer has not reviewed (no verdict, no moved point)
    page.locator("body").press("1")
    done = {FACE, face, before}
    _expect_progress(page, reviewed + 1 + (before != FACE))
    page.locator("body").press("u")
    following = [order[(at + k) % len(order)] for k in range(len(order))]
    expect(page.locator("#review-info")).to_contain_text(f"Face {next(i for i in following if i not in done)} ",
                                                         timeout=TIMEOUT_MS)
    # typing in the note box is text, not hotkeys
    page.locator("#review-note textarea").fill("")
    page.locator("#review-note textarea").type("n2")
    assert page.locator("#review-note textarea").input_value() == "n2"
    _expect_progress(page, reviewed + 1 + (before != FACE))


def test_moved_points_count_as_reviewed_and_the_status_follows_the_face(review_app, page):
    """A face with corrected points and no verdict counts as reviewed (the export makes it human),
    and after opening another face the status line talks about that face."""
    first, second = MOVE_FACE, HOTKEY_FACE
    _open(page, first)
    reviewed = _progress(page)
    assert _stored(review_app, first)[0] == {"verdict": None, "note": "", "corrections": {}}
    _drag(page, POINT, 12, 9)
    expect(page.locator("#review-status")).to_contain_text(f"Point {POINT} of face {first} moved", timeout=TIMEOUT_MS)
    _expect_progress(page, reviewed + 1)  # no verdict given
    _open(page, second)
    expect(page.locator("#review-status")).to_have_text(re.compile(rf"Face {second} open"), timeout=TIMEOUT_MS)
    assert f"face {first}" not in page.locator("#review-status").inner_text()
    page.locator("body").press("z")  # undo on the open face's editor: nothing of the first face is touched
    _open(page, first)
    expect(page.locator("#review-status")).to_contain_text(f"Face {first} open · 1 point corrected by {REVIEWER}",
                                                           timeout=TIMEOUT_MS)


def test_old_position_of_a_corrected_point_is_a_white_cross_outlined_in_black(review_app, page, artifacts_dir):
    _open(page, FACE)
    _drag(page, POINT, 14, 18)
    expect(page.locator(f"#review-editor .le-fixed[data-i='{POINT}']")).to_have_count(1)
    svg = page.locator("#review-editor svg.le-svg")
    per_unit = svg.bounding_box()["width"] / float(svg.get_attribute("viewBox").split()[2])  # screen px per image px
    outline, cross = (page.locator(f"#review-editor .le-layer-orig path.{c}").first for c in ("le-orig-outline", "le-orig"))
    assert outline.evaluate("e => getComputedStyle(e).stroke") == "rgb(0, 0, 0)"
    assert cross.evaluate("e => getComputedStyle(e).stroke") == "rgb(255, 255, 255)"
    # on screen: a 3.5 px black line under a 1.5 px white one, the cross 10 px wide
    assert float(outline.get_attribute("stroke-width")) * per_unit == pytest.approx(3.5, rel=0.02)
    assert float(cross.get_attribute("stroke-width")) * per_unit == pytest.approx(1.5, rel=0.02)
    side = cross.evaluate("e => e.getBBox().width") * per_unit  # the geometry, without the stroke
    assert side == pytest.approx(10, rel=0.02)
    # both predictions toggles are live on this server (it has predictions)
    expect(page.locator("#review-editor .le-show-pred")).to_be_enabled()
    expect(page.locator("#review-editor .le-no-pred")).to_have_count(0)
    svg.scroll_into_view_if_needed()
    page.mouse.move(*_centre(page, POINT))
    for _ in range(4):  # zoom in around the corrected point, for people to look at
        page.mouse.wheel(0, -100)
    svg.screenshot(path=str(artifacts_dir / "editor-corrected-point.png"))


def _view_width(page) -> float:
    return float(page.locator("#review-editor svg.le-svg").get_attribute("viewBox").split()[2])


def test_plus_and_minus_keys_zoom_and_colours_come_from_model_draw(page):
    """The README's "+/- to zoom": the keys zoom like the toolbar (outside text boxes only), and
    the editor draws ground truth, prediction and error in model.draw's colours (one legend)."""
    from model.draw import ERROR_COLOR, GT_COLOR
    from model.layout import POINT_REGION, REGION_COLORS

    _open(page, FACE)
    page.locator("#review-editor .le-fit").click()
    fit = _view_width(page)
    page.locator("#review-help").click()  # focus on the page, not in a text box
    page.keyboard.press("+")
    assert _view_width(page) == pytest.approx(fit / 1.5, rel=1e-3)
    page.keyboard.press("=")
    assert _view_width(page) == pytest.approx(fit / 2.25, rel=1e-3)
    page.keyboard.press("-")
    assert _view_width(page) == pytest.approx(fit / 1.5, rel=1e-3)
    page.locator("#review-note textarea").focus()  # typing "+" in a note zooms nothing
    page.keyboard.press("+")
    assert _view_width(page) == pytest.approx(fit / 1.5, rel=1e-3)
    page.locator("#review-help").click()
    page.keyboard.press("-")
    assert _view_width(page) == pytest.approx(fit, rel=1e-3)

    rgb = lambda c: "rgb({}, {}, {})".format(*c)  # noqa: E731  (the browser's computed-style form)
    ring = page.locator("#review-editor .le-gt:not(.le-hit):not(.le-fixed)").first
    assert ring.evaluate("e => getComputedStyle(e).stroke") == rgb(GT_COLOR)
    dot = page.locator("#review-editor .le-pred").nth(POINT)
    assert dot.evaluate("e => getComputedStyle(e).fill") == rgb(REGION_COLORS[POINT_REGION[POINT]])
    line = page.locator("#review-editor .le-layer-err line").first
    assert line.evaluate("e => getComputedStyle(e).stroke") == rgb(ERROR_COLOR)
    assert "ground truth (green rings)" in page.locator("#review-editor .le-bar").inner_text()
