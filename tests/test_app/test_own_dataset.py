"""The app on a dataset of one's own photos: python -m model.annotate on real photos, opened by the
app's data layer, ranked without ground truth, one point correction and verdicts stored through the
Review tab's callbacks, exported in both layouts and read back (model.formats.wflw and pycocotools); a
one-epoch fine-tune on the export and the Compare view; the Review tab in chromium."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from pycocotools.coco import COCO

from app import browser, compare, review
from app.context import AppContext
from app.own_dataset import EXPORTS_DIR
from app.review_store import ReviewStore
from app.wflw_data import WFLWTestSet
from model.formats.dataset import COCO_FILE
from model.formats.coco import read_coco
from model.formats.wflw import WFLWTree, load_wflw_txt
from model.image import read_image
from tests.helpers import REPO, open_tab
from training.train import parse_args
from training.wflw import find_wflw_root

RUN_TIMEOUT = 600
REVIEWER = "ana"
MOVED_POINT = 54  # nose tip


@pytest.fixture(scope="module")
def ctx(own_photo_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-app")
    context = AppContext(predictor=None, detector=None, testset=WFLWTestSet.load(own_photo_dataset),
                         store=ReviewStore(folder / "review.sqlite"), output_dir=folder / "out")
    context.output_dir.mkdir()
    yield context
    context.close()


def _move(ctx, face: int, x: float, y: float) -> str:
    """The editor's ``move`` event for ``face`` as the Review tab delivers it."""
    status, _, _ = review.edit_point(ctx, face, REVIEWER, None, gr.EventData(None, {"face": face, "point": MOVED_POINT,
                                                                                   "x": x, "y": y}))
    return status


def _export(ctx) -> tuple[Path, list[str], str]:
    """The Review tab's Export: (the new export folder, the offered files' names, the panel's Markdown)."""
    files, info = review.export(ctx, REVIEWER)
    folder = Path(files[0]).parent
    assert all(Path(f).parent == folder for f in files)
    return folder, [Path(f).name for f in files], info


def _same_face(samples, face) -> list:
    """The samples with ``face``'s image and box (to 0.01 px)."""
    return [s for s in samples if s.image == face.image and np.abs(s.box - face.box).max() < 0.01]


def test_app_opens_an_annotate_dataset(ctx, own_photo_dataset):
    ts = ctx.testset
    test = load_wflw_txt(WFLWTree(own_photo_dataset).annotations("test"))
    train = load_wflw_txt(WFLWTree(own_photo_dataset).annotations("train"))
    coco = COCO(str(own_photo_dataset / COCO_FILE))
    assert ts.kind == "annotate" and len(ts) == len(test) + len(train) == len(coco.getAnnIds()) >= 4
    assert ts.num_test == len(test) >= 1 and [s.image for s in ts.test_samples] == [s.image for s in test]
    assert ts.sources == ["model"] * len(ts)
    # each face's score and flip error are those of its COCO annotation (matched by image and box)
    ids = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    for i, s in enumerate(ts.samples):
        ann = min(coco.loadAnns(coco.getAnnIds(imgIds=[ids[s.image]])),
                  key=lambda a: np.abs(np.asarray(a["bbox"][:2]) - s.box[:2]).max())
        assert np.abs(np.asarray(ann["bbox"][:2]) - s.box[:2]).max() < 0.01
        assert ts.scores[i] == pytest.approx(ann["score"]) and ts.flip_errors[i] == pytest.approx(ann["flip_error"])

    assert "no NME to rank by" in browser.status(ctx)
    items, order, count = browser.gallery(ctx, "all", 0, "", "flip error")
    assert len(order) == len(ts) and "flip error, least consistent first" in count
    assert list(ts.flip_errors[order]) == sorted(ts.flip_errors, reverse=True)
    assert items[0][1].startswith(f"#1 · flip {ts.flip_errors[order[0]]:.2f}%") and "· model ·" in items[0][1]
    _, order, _ = browser.gallery(ctx, "all", 0, "", "detector score")
    assert list(ts.scores[order]) == sorted(ts.scores)


def test_review_and_export_both_layouts(ctx, tmp_path):
    ts = ctx.testset
    fixed, dropped, fine = 0, 1, len(ts) - 1  # a test face (first), its neighbour, and a train face (last)
    opened = review.open_face(ctx, fixed, REVIEWER)
    assert opened[1]["interactive"] is True and opened[1]["value"] is None
    x, y = (ts.samples[fixed].landmarks[MOVED_POINT] + [3.25, -2.5]).tolist()
    assert f"Point {MOVED_POINT} of face {fixed} moved" in _move(ctx, fixed, x, y)
    review.save_verdict(ctx, dropped, "not a face", REVIEWER)
    review.save_verdict(ctx, fine, "ok", REVIEWER)
    with pytest.raises(gr.Error, match="Verdict must be one of ok, fixed, not a face"):
        review.save_verdict(ctx, fine, "annotation wrong", REVIEWER)

    # the status line names the face shown (not the one moved last), and how much of it is corrected
    assert review.open_face(ctx, dropped, REVIEWER)[-1] == f"Face {dropped} open · 0 points corrected by {REVIEWER}."
    assert review.open_face(ctx, fixed, REVIEWER)[-1] == f"Face {fixed} open · 1 point corrected by {REVIEWER}."

    export, _, _ = _export(ctx)
    folder, zip_path = export / "dataset", export / "dataset.zip"
    # the WFLW lists: the split kept, the not-a-face left out, the moved point in place
    tree = WFLWTree(folder)
    test, train = load_wflw_txt(tree.annotations("test")), load_wflw_txt(tree.annotations("train"))
    dropped_split = ts.split_of(dropped)
    assert len(test) == ts.num_test - (dropped_split == "test")
    assert len(train) == len(ts) - ts.num_test - (dropped_split == "train")
    assert _same_face(test + train, ts.samples[dropped]) == []
    [got] = _same_face(test + train, ts.samples[fixed])
    np.testing.assert_allclose(got.landmarks[MOVED_POINT], [x, y], atol=1e-3)
    others = np.delete(np.arange(98), MOVED_POINT)
    np.testing.assert_allclose(got.landmarks[others], ts.samples[fixed].landmarks[others], atol=1e-3)

    # annotations.json, read by pycocotools: the corrected face human-made, the rest model-made
    coco = COCO(str(folder / COCO_FILE))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(ts) - 1
    human = [a for a in anns if a["source"] == "human"]
    assert len(human) == 1 and sum(a["source"] == "model" for a in anns) == len(ts) - 2
    keypoints = np.asarray(human[0]["keypoints"]).reshape(98, 3)
    np.testing.assert_allclose(keypoints[MOVED_POINT, :2], [x, y], atol=0.01)
    assert coco.dataset["info"]["review"]["not_a_face"] == 1 and coco.dataset["info"]["review"]["human"] == 1

    # the zip is the same dataset, photos included: unzipped, it is a ROOT that training reads
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path)
    unzipped = tmp_path / "dataset"
    find_wflw_root(unzipped)
    assert sorted(p.relative_to(unzipped) for p in unzipped.rglob("*") if p.is_file()) == sorted(
        p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    again_unzipped = WFLWTestSet.load(unzipped)
    assert len(again_unzipped) == len(ts) - 1 and read_image(unzipped / "WFLW_images" / again_unzipped.samples[0].image).ndim == 3

    # the exported dataset opens again, and shows which faces are human-made
    again = WFLWTestSet.load(folder)
    assert sorted(again.sources) == sorted(["human"] + ["model"] * (len(ts) - 2))
    mixed = AppContext(predictor=None, detector=None, testset=again, output_dir=ctx.output_dir)
    items, order, _ = browser.gallery(mixed, "all", 0, "", "flip error")
    human_index = again.sources.index("human")
    assert "· human ·" in items[order.index(human_index)][1]
    assert "1 human" in browser.status(mixed)


def test_each_export_gets_a_folder_of_its_own_beside_the_dataset(ctx):
    first, names, info = _export(ctx)
    second, _, _ = _export(ctx)
    root = ctx.testset.tree.root
    assert first.parent == second.parent == root / EXPORTS_DIR and first != second  # never overwritten
    assert names == ["review.csv", "review.json", "dataset.zip"]
    assert sorted(p.name for p in first.iterdir()) == ["dataset", "dataset.zip", "review.csv", "review.json"]
    assert json.loads((first / "review.json").read_text())["exported_by"] == REVIEWER
    assert read_coco(first / "dataset" / COCO_FILE)[1]["review"]["exported_by"] == REVIEWER
    assert read_coco(root / COCO_FILE)[0]  # the original is left as it was
    # the panel names the folder and a command that training.train takes, on the exported dataset
    assert f"`{first}`" in info and "stays after the app stops" in info
    command = re.search(r"```\n(python -m training.train .*?)\n```", info, re.S).group(1)
    assert command.count(" \\\n    ") == 2  # three shell lines
    cfg = parse_args(shlex.split(command.replace("\\\n", " "))[3:])  # the shell joins continued lines
    assert cfg.wflw_root == str(first / "dataset") and cfg.pretrained == "official" and cfg.lr == 1e-4
    find_wflw_root(cfg.wflw_root)


def _run(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_fine_tune_on_the_export_and_compare(ctx, standin_checkpoint, tmp_path):
    """One epoch from the stand-in on the exported set, both checkpoints evaluated on its held-out
    split, and the Compare view listing those faces."""
    folder = _export(ctx)[0] / "dataset"
    work = tmp_path / "work"
    _run(["training.train", "--wflw-root", str(folder), "--work-dir", str(work), "--pretrained",
          str(standin_checkpoint), "--epochs", "1", "--input-size", "32", "--workers", "0", "--batch-size", "4",
          "--lr", "1e-4", "--warmup-iters", "1", "--print-freq", "1", "--eval-interval", "1", "--device", "cpu"])
    for name, weights in (("standin", standin_checkpoint), ("tuned", work / "checkpoint.pth")):
        _run(["training.evaluate", "--wflw-root", str(folder), "--weights", str(weights), "--out", str(tmp_path / name),
              "--device", "cpu"])
    exported = AppContext(predictor=None, detector=None, testset=WFLWTestSet.load(folder), output_dir=ctx.output_dir)
    summary, table, state = compare.compare(exported, str(tmp_path / "standin" / "predictions.json"),
                                            str(tmp_path / "tuned" / "predictions.json"))
    test = exported.testset.test_samples
    assert sorted(table["face"]) == list(range(len(test))) and sorted(state["order"]) == list(range(len(test)))
    assert list(table["image"]) == [test[i].image for i in table["face"]]
    assert "standin.pth" in summary and "checkpoint.pth" in summary and "not an independent ground truth" in summary
    faces = "1 face" if len(test) == 1 else f"{len(test)} faces"  # never "1 faces"
    assert f"**Split: test**, {faces} of " in summary
    deltas = table["delta (pp)"].to_numpy()
    assert np.all(np.diff(deltas) <= 0)  # largest regression first


@pytest.mark.browser
def test_review_tab_in_chromium(own_photo_dataset, standin_checkpoint, app_server, browser_factory, artifacts_dir,
                                tmp_path):
    """The live app on the annotate dataset: the browser says there is no NME, the Review tab offers
    ok / fixed / not a face, and a click on "not a face" lands in the SQLite store."""
    from playwright.sync_api import expect

    db = tmp_path / "review.sqlite"
    server = app_server(["--wflw-root", str(own_photo_dataset), "--review-db", str(db), "--weights",
                         str(standin_checkpoint), "--device", "cpu"], artifacts_dir / "app-own-dataset.log").start()
    try:
        page = browser_factory().new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url, wait_until="load")
        page.get_by_role("tab", name="WFLW browser").click()
        expect(page.locator("#browser-status")).to_contain_text("no NME to rank by", timeout=120_000)
        expect(page.locator("#browser-ranking")).to_be_visible()
        page.get_by_role("tab", name="Review").click()
        reviewer = page.locator("#review-reviewer textarea, #review-reviewer input").first
        reviewer.fill(REVIEWER)
        reviewer.press("Enter")
        page.locator("#review-index input").fill("1")
        page.locator("#review-open").click()
        expect(page.locator("#review-info")).to_contain_text("Annotated by: model", timeout=120_000)
        labels = page.locator("#review-verdict label")
        expect(labels).to_have_text(["ok", "fixed", "not a face"])
        labels.filter(has_text="not a face").click()
        expect(page.locator("#review-progress")).to_contain_text(f"{REVIEWER}: 1 /", timeout=120_000)
        image = WFLWTestSet.load(own_photo_dataset).samples[1].image
        assert ReviewStore(db).get(1, image, reviewer=REVIEWER)["verdict"] == "not a face"

        # This dataset has no predictions: the editor's prediction and error toggles say so and are off.
        for key in ("pred", "err"):
            expect(page.locator(f"#review-editor .le-show-{key}")).to_be_disabled()
            expect(page.locator(f"#review-editor .le-show-{key}")).not_to_be_checked()
        expect(page.locator("#review-editor .le-no-pred")).to_contain_text("No predictions yet", timeout=120_000)
        _phone_toggles(browser_factory, server.url, artifacts_dir)

        # Export: the panel under the button names the new folder; it outlives the server (SIGTERM).
        page.locator("#review-export").click()
        info = page.locator("#review-export-info")
        expect(info).to_contain_text("Exported to", timeout=120_000)
        expect(info).to_be_in_viewport()
        expect(info).to_contain_text("python -m training.train --wflw-root")
        page.screenshot(path=str(artifacts_dir / "app-own-export.png"))
        folder = Path(re.search(r"Exported to (\S+)", info.inner_text()).group(1))
        assert folder.parent == own_photo_dataset / EXPORTS_DIR
    finally:
        server.stop()  # SIGTERM: the app's own temporary folders go, the export stays
    assert sorted(p.name for p in folder.iterdir()) == ["dataset", "dataset.zip", "review.csv", "review.json"]
    find_wflw_root(folder / "dataset")
    assert ReviewStore(db).get(1, image, reviewer=REVIEWER)["verdict"] == "not a face"
    with zipfile.ZipFile(folder / "dataset.zip") as archive:
        assert archive.testzip() is None and "dataset/annotations.json" in archive.namelist()


def _phone_toggles(browser_factory, url: str, artifacts_dir) -> None:
    """At 390x844: the toggles that cannot draw anything yet are disabled, and the note saying why fits."""
    from playwright.sync_api import expect

    page = browser_factory().new_page(viewport={"width": 390, "height": 844})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#upload-run", timeout=120_000)
    open_tab(page, "Review")
    page.locator("#review-index input").fill("0")
    page.locator("#review-open").click()
    expect(page.locator("#review-editor .le-no-pred")).to_be_visible(timeout=120_000)
    note = page.locator("#review-editor .le-no-pred").bounding_box()
    bar = page.locator("#review-editor .le-bar").bounding_box()
    assert note["x"] >= bar["x"] - 0.5 and note["x"] + note["width"] <= bar["x"] + bar["width"] + 0.5
    for key in ("pred", "err"):
        expect(page.locator(f"#review-editor .le-show-{key}")).to_be_disabled()
    expect(page.locator("#review-editor .le-show-gt")).to_be_enabled()
    page.locator("#review-editor .le-bar").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "app-own-review-phone.png"))
    page.close()


def test_a_failed_export_says_why_and_leaves_no_folder(own_photo_dataset, tmp_path):
    """A photo gone from the dataset since it was annotated, and an export folder that cannot be made."""
    root = tmp_path / "copy"
    shutil.copytree(own_photo_dataset, root, ignore=shutil.ignore_patterns(EXPORTS_DIR))
    testset = WFLWTestSet.load(root)
    gone = testset.tree.images / testset.samples[0].image
    gone.unlink()
    context = AppContext(predictor=None, detector=None, testset=testset, store=ReviewStore(tmp_path / "r.sqlite"),
                         output_dir=tmp_path / "out")
    try:
        with pytest.raises(gr.Error, match=f"The export could not be written: .*{re.escape(gone.name)}"):
            review.export(context, REVIEWER)
        assert list((root / EXPORTS_DIR).iterdir()) == []  # the half-written folder is gone

        context.export_dir = tmp_path / "a-file"
        context.export_dir.write_text("not a folder")
        with pytest.raises(gr.Error, match="The export folder could not be made: .*Start the app with --export-dir"):
            review.export(context, REVIEWER)
    finally:
        context.close()
