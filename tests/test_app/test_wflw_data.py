"""app.wflw_data: the browser's test set reads the predictions.json of training.evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.wflw_data import WFLWTestSet
from training import metrics


def test_predictions_json_ranks_worst_first(small_wflw_root, tmp_path):
    ts = WFLWTestSet.load(small_wflw_root)
    rng = np.random.default_rng(0)
    pred = ts.gt + rng.normal(0, 1, ts.gt.shape).astype(np.float32) * np.arange(1, len(ts) + 1)[:, None, None]
    records = [{"image": s.image, "index": i, "pred": pred[i].round(3).tolist(), "gt": s.landmarks.round(3).tolist()}
               for i, s in enumerate(ts.samples)]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(records))
    ts.load_predictions(path)
    np.testing.assert_allclose(ts.nme, metrics.nme(pred.round(3), ts.gt), rtol=1e-4)
    order = ts.order()
    assert list(order) == list(np.argsort(-ts.nme))
    assert ts.rank(float(ts.nme[order[0]])) == (1, len(ts))
    assert set(ts.order("occlusion")) >= set(range(len(ts) - 4, len(ts)))

    records[0]["gt"][0] = [0.0, 0.0]
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match="record 0: its ground truth differs"):
        ts.load_predictions(path)
