"""app.browser without a server: before predictions every panel says what it needs; after them the
metrics name their split, and subset columns appear only where there are subsets."""
from __future__ import annotations

import numpy as np
import pytest

from app import browser
from app.context import AppContext
from app.wflw_data import WFLWTestSet
from model.layout import ATTRIBUTES
from tests.helpers import shifted
from training import metrics

META = {"checkpoint": "w.pth", "sha256": "", "flip_test": True, "flip_convention": "1.x", "box_mode": "landmarks",
        "input_size": 256}


@pytest.fixture
def wflw_context(small_wflw_root, tmp_path):
    ctx = AppContext(predictor=None, detector=None, testset=WFLWTestSet.load(small_wflw_root), output_dir=tmp_path)
    yield ctx
    ctx.close()


def test_before_predictions_each_panel_says_what_it_needs(wflw_context, split_context):
    for ctx in (wflw_context, split_context):
        status, note, table, ced, per_landmark, landmark_line, landmark_table = browser.overview(ctx)
        split = ctx.testset.split
        assert note.startswith(f"#### Metrics of the {split} split: they need predictions")
        for panel in ("**Table**", "**CED curve**", "**Per-landmark error**", "**Landmark**", "**Gallery**"):
            assert panel in note
        assert "`--predictions predictions.json`" in note and "load weights" in note  # no model in this context
        assert not table["visible"] and not ced["visible"] and not per_landmark["visible"]
        assert landmark_line == browser.LANDMARK_NEEDS and not landmark_table["visible"]
        assert browser.landmark_faces(ctx, "16")[2] == browser.LANDMARK_NEEDS
    assert "`python -m training.evaluate --split all`" in browser.metrics_note(split_context)
    assert browser.gallery(wflw_context, "all", 0, "")[2].startswith("The gallery ranks faces worst NME first and "
                                                                     "needs predictions")
    assert "**10 faces, the test split** of" in browser.status(wflw_context)
    assert "no NME to rank by" in browser.status(split_context)


def test_wflw_metrics_show_only_the_subsets_with_faces(wflw_context):
    ts = wflw_context.testset
    nme = np.linspace(0.02, 0.2, len(ts))
    ts.set_predictions(shifted(ts.samples, nme), "p.json", META)
    _, note, table, ced, _, landmark_line, _ = browser.overview(wflw_context)
    with_faces = [name for j, name in enumerate(ATTRIBUTES) if ts.flags[:, j].any()]
    empty = [name for name in ATTRIBUTES if name not in with_faces]
    assert with_faces and empty  # the small tree has both kinds
    frame = table["value"]
    assert list(frame.columns) == ["metric", "test", *with_faces] and table["visible"]
    assert table["label"] == "Metrics of the test split and its subsets"
    rows = {row[0]: row for row in frame.itertuples(index=False)}
    assert rows["faces"][1:] == (len(ts), *[int(ts.flags[:, ATTRIBUTES.index(n)].sum()) for n in with_faces])
    assert rows["NME (%)"][1] == pytest.approx(100 * nme.mean(), abs=0.006)
    assert note.startswith("#### Metrics of the test split (10 faces)")
    assert f"(not shown, no faces here: {', '.join(empty)})" in note
    legend = [t.get_text().split(" (")[0] for t in ced["value"].axes[0].get_legend().get_texts()]
    assert legend[:-1] == ["test", *with_faces]  # one curve per column of the table, then the threshold
    assert landmark_line == browser.LANDMARK_HINT


def test_an_own_dataset_has_split_columns_and_no_subsets(split_context):
    ts = split_context.testset
    nme = np.linspace(0.01, 0.40, len(ts))
    ts.set_predictions(shifted(ts.samples, nme), "p.json", {**META, "split": "all"})
    status, note, table, *_ = browser.overview(split_context)
    frame = table["value"]
    assert list(frame.columns) == ["metric", "all", "test", "train"]  # no attribute subsets, though flags exist
    rows = {row[0]: row for row in frame.itertuples(index=False)}
    assert rows["faces"][1:] == (40, 8, 32)
    assert rows["NME (%)"][1:] == pytest.approx((100 * nme.mean(), 100 * nme[:8].mean(), 100 * nme[8:].mean()),
                                                abs=0.006)
    assert rows["FR@0.1 (%)"][3] == pytest.approx(100 * metrics.fr_auc(nme[8:])[0], abs=0.006)
    assert table["label"] == "Metrics of the all split by split"
    assert "no WFLW attribute flags, so there are no subset columns" in note and "not an independent" in note
    assert "no NME to rank by" not in status and "not against an independent ground truth" in status


def test_counts_are_in_words(wflw_context):
    ts = wflw_context.testset
    ts.set_predictions(shifted(ts.samples, np.linspace(0.02, 0.2, len(ts))), "p.json", META)
    assert browser.gallery(wflw_context, "all", 19.9, "")[2].startswith("1 face matches (all, NME from 19.9 %")
    assert browser.gallery(wflw_context, "all", 0, "")[2].startswith("10 faces match")
    assert browser.gallery(wflw_context, "all", 50, "")[2].startswith("0 faces match")
