"""app.wflw_data: the browser's test set reads the predictions.json of training.evaluate (one schema)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.wflw_data import WFLWTestSet
from training import metrics
from training.evaluate import load_split, write_predictions
from model.formats.wflw import WFLWTree

META = {"checkpoint": "best.pth", "sha256": "ab" * 32, "flip_test": True, "flip_convention": "1.x",
        "box_mode": "landmarks", "input_size": 256}


def test_predictions_json_ranks_worst_first(small_wflw_root, tmp_path):
    ts = WFLWTestSet.load(small_wflw_root)
    rng = np.random.default_rng(0)
    pred = ts.gt + rng.normal(0, 1, ts.gt.shape).astype(np.float32) * np.arange(1, len(ts) + 1)[:, None, None]
    path = tmp_path / "predictions.json"
    write_predictions(path, ts.samples, pred, META)
    ts.load_predictions(path)
    np.testing.assert_allclose(ts.nme, metrics.nme(pred.round(3), ts.gt), rtol=1e-4)
    assert ts.source == "predictions.json" and ts.meta == {**META, "split": "test"}
    order = ts.order()
    assert list(order) == list(np.argsort(-ts.nme))
    assert ts.rank(float(ts.nme[order[0]])) == (1, len(ts))
    assert set(ts.order("occlusion")) >= set(range(len(ts) - 4, len(ts)))
    # an NME range in fractions: only faces inside it, still worst first
    lo, hi = float(np.sort(ts.nme)[2]), float(np.sort(ts.nme)[5])
    assert sorted(ts.order("all", (lo, hi))) == sorted(np.flatnonzero((ts.nme >= lo) & (ts.nme <= hi)))

    data = json.loads(path.read_text())
    data["faces"][0]["gt"][0] = [0.0, 0.0]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="face record 0: its ground truth differs"):
        ts.load_predictions(path)


def test_the_set_names_its_split_and_refuses_predictions_of_another(small_wflw_root, synthetic_root, tmp_path):
    ts = WFLWTestSet.load(small_wflw_root)
    assert (ts.split, ts.splits, ts.kind) == ("test", ("test",), "wflw")
    assert list(ts.split_indices("test")) == list(range(len(ts)))
    with pytest.raises(ValueError, match="split 'train' is not available: the browser holds only the test split"):
        ts.split_indices("train")
    path = write_predictions(tmp_path / "all.json", ts.samples, ts.gt, {**META, "split": "all"})
    with pytest.raises(ValueError, match=r"all.json holds predictions for the all split \(10 faces\), not the "
                                         r"test split \(10 faces\); make them with python -m training.evaluate "
                                         r"--split test"):
        ts.load_predictions(path)
    assert ts.pred is None  # nothing half-loaded

    # an own-photo dataset holds every face, test first: its split is "all"
    tree = WFLWTree(synthetic_root)
    samples, flags = load_split(tree, "all")
    own = WFLWTestSet(tree, samples, flags, kind="annotate", num_test=8)
    assert (own.split, own.splits) == ("all", ("test", "train", "all"))
    assert list(own.split_indices("train")) == list(range(8, 40)) and len(own.split_indices("all")) == 40
    own.load_predictions(write_predictions(tmp_path / "own.json", samples, own.gt, {**META, "split": "all"}))
    assert own.meta["split"] == "all" and own.nme.shape == (40,)
