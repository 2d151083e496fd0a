import json

import pytest

from model.layout import ATTRIBUTES, NUM_LANDMARKS
from training.evaluate import run


def test_evaluate_writes_results(learning_run, learning_root, tmp_path, capsys):
    cfg, result = learning_run["cfg"], learning_run["result"]
    num_faces = len(result["last"]["per_image"])
    weights = f"{cfg.work_dir}/checkpoint.pth"
    metrics = run(learning_root, weights, tmp_path, box="landmarks")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert written["num_faces"] == num_faces and written["box"] == "landmarks"
    assert set(written["subsets"]) == set(ATTRIBUTES)
    assert {"nme", "fr@0.1", "auc@0.1", "num_faces"} <= set(written["subsets"]["pose"])
    # image-space NME through the pipeline = the crop-space NME of training's evaluation
    assert written["nme"] == pytest.approx(100 * result["last"]["nme"], rel=1e-3)
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == num_faces and len(predictions[0]["pred"]) == NUM_LANDMARKS
    assert set(predictions[0]) >= {"image", "index", "pred", "gt", "nme", "attributes"}
    assert (tmp_path / "ced.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "Testset" in out and "Occlusion" in out


def test_rect_boxes_no_flip(learning_run, learning_root, tmp_path):
    cfg = learning_run["cfg"]
    metrics = run(learning_root, f"{cfg.work_dir}/best.pth", tmp_path, box="rect", flip_test=False)
    assert metrics["box"] == "rect" and metrics["flip_test"] is False
    with pytest.raises(RuntimeError, match="'face' is not supported"):
        run(learning_root, f"{cfg.work_dir}/best.pth", tmp_path, box="face")
