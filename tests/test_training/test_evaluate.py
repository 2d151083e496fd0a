import json

import numpy as np
import pytest

from model.layout import ATTRIBUTES, NUM_LANDMARKS
from model.network import load_regressor
from model.pipeline import Predictor
from training.evaluate import (PREDICTIONS_META_KEYS, EvaluationCancelled, evaluate_checkpoint, file_sha256, main,
                               predict_samples, prediction_meta, read_predictions, read_predictions_meta,
                               write_predictions)
from training.wflw import find_wflw_root, load_test_split


@pytest.fixture(scope="module")
def test_split(synthetic_root):
    tree = find_wflw_root(synthetic_root)
    samples, _ = load_test_split(tree)
    return tree, samples


def _meta(path):
    path.write_bytes(b"not really weights")
    return prediction_meta(path, flip_test=True, flip_convention="1.x", box_mode="landmarks", input_size=32)


def test_predictions_round_trip(test_split, tmp_path):
    _, samples = test_split
    gt = np.stack([s.landmarks for s in samples])
    pred = gt + np.float32(1.0)  # every point 1 px right and 1 px down
    meta = _meta(tmp_path / "w.pth")
    assert meta["sha256"] == file_sha256(tmp_path / "w.pth") and meta["checkpoint"] == "w.pth"
    write_predictions(tmp_path / "p.json", samples, pred, meta)
    np.testing.assert_allclose(read_predictions(tmp_path / "p.json", samples), pred, atol=5e-4)
    assert read_predictions_meta(tmp_path / "p.json") == meta
    assert set(PREDICTIONS_META_KEYS) <= set(meta)
    record = json.loads((tmp_path / "p.json").read_text())["faces"][3]
    inter_ocular = np.linalg.norm(gt[3, 60] - gt[3, 72])
    assert record["nme"] == pytest.approx(np.sqrt(2) / inter_ocular, rel=1e-5)  # sqrt(2) px per point
    assert record["index"] == 3 and record["image"] == samples[3].image


def _edit(tmp_path, samples, change):
    meta = _meta(tmp_path / "w.pth")
    path = write_predictions(tmp_path / "p.json", samples, np.stack([s.landmarks for s in samples]), meta)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "p.json: not a predictions file"),
    (lambda d: d.update(version=7), "p.json: predictions version 7 is not supported"),
    (lambda d: d["faces"].pop(), "p.json: 7 faces, but the test list has 8"),
    (lambda d: d["faces"][2].update(index=1), "p.json face record 2: index 1 appears twice"),
    (lambda d: d["faces"][4].update(index=99), r"p.json face record 4: index 99 outside the test list \(0..7\)"),
    (lambda d: d["faces"][5].update(image="x.jpg"), "p.json face record 5: image 'x.jpg', but test face 5 is"),
    (lambda d: d["faces"][6]["gt"][0].__setitem__(0, -5.0), "p.json face record 6: its ground truth differs"),
    (lambda d: d["faces"][0].update(pred=[[1, 2]]), "p.json face record 0: 'pred' and 'gt' must be 98"),
    (lambda d: d["faces"][1].pop("pred"), "p.json face record 1: expected an object with 'index'"),
])
def test_predictions_errors_name_file_and_record(test_split, tmp_path, change, message):
    _, samples = test_split
    with pytest.raises(ValueError, match=message):
        read_predictions(_edit(tmp_path, samples, change), samples)


def test_write_predictions_checks_its_input(test_split, tmp_path):
    _, samples = test_split
    gt = np.stack([s.landmarks for s in samples])
    with pytest.raises(ValueError, match="lacks \\['sha256'"):
        write_predictions(tmp_path / "p.json", samples, gt, {"checkpoint": "w.pth"})
    with pytest.raises(ValueError, match=r"pred must have shape \(8, 98, 2\), got \(7, 98, 2\)"):
        write_predictions(tmp_path / "p.json", samples, gt[:7], _meta(tmp_path / "w.pth"))
    assert not (tmp_path / "p.json").exists()
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        read_predictions(tmp_path / "p.json", samples)


def test_predict_samples_progress_and_cancel(learning_run, test_split):
    cfg = learning_run["cfg"]
    tree, samples = test_split
    model = load_regressor(f"{cfg.work_dir}/best.pth")
    predictor = Predictor(model, input_size=cfg.input_size, backend="torch", device="cpu")
    calls = []
    pred = predict_samples(predictor, samples, tree.images, "landmarks", progress=lambda i, n: calls.append((i, n)))
    assert pred.shape == (len(samples), NUM_LANDMARKS, 2) and pred.dtype == np.float32
    assert calls == [(i, len(samples)) for i in range(1, len(samples) + 1)]  # one face per image here
    # the same predictions face by face through predict_boxes (row order = sample order)
    from model.image import read_image
    from training.wflw import crop_box, resolve_image
    s = samples[5]
    one = predictor.predict_boxes(read_image(resolve_image(tree.images, s.image)), crop_box(s, "landmarks")[None])
    np.testing.assert_allclose(pred[5], one[0], atol=1e-4)
    polls = []
    with pytest.raises(EvaluationCancelled, match="cancelled after 3 of 8 images"):
        predict_samples(predictor, samples, tree.images, "rect", cancel=lambda: polls.append(1) or len(polls) > 3)
    with pytest.raises(ValueError, match="box_mode must be one of"):
        predict_samples(predictor, samples, tree.images, "face")


def test_evaluate_writes_results(learning_run, learning_root, tmp_path, capsys):
    cfg, result = learning_run["cfg"], learning_run["result"]
    num_faces = len(result["last"]["per_image"])
    weights = f"{cfg.work_dir}/checkpoint.pth"
    convention = result["config"].flip_convention  # the recipe's, as training evaluated
    assert convention == "0.x"  # the default recipe's
    assert main(["--wflw-root", str(learning_root), "--weights", weights, "--out", str(tmp_path),
                 "--flip-convention", convention]) == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["num_faces"] == num_faces and written["box_mode"] == "landmarks"
    assert written["input_size"] == cfg.input_size and written["precision"] == "fp32"
    assert written["flip_convention"] == "0.x" and written["sha256"] == file_sha256(weights)
    assert set(written["subsets"]) == set(ATTRIBUTES)
    assert {"nme", "fr@0.1", "auc@0.1", "num_faces"} <= set(written["subsets"]["pose"])
    # image-space NME through the pipeline = the crop-space NME of training's evaluation (same
    # crops, same flip convention)
    assert written["nme"] == pytest.approx(100 * result["last"]["nme"], rel=1e-3)
    samples, _ = load_test_split(find_wflw_root(learning_root))
    pred = read_predictions(tmp_path / "predictions.json", samples)
    assert pred.shape == (num_faces, NUM_LANDMARKS, 2)
    assert read_predictions_meta(tmp_path / "predictions.json")["checkpoint"] == "checkpoint.pth"
    assert (tmp_path / "ced.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "Testset" in out and "Occlusion" in out and "input size: 32" in out and "flip test: on (0.x)" in out


# The options below run on the 8-face synthetic set (same image size as the learning set).


def test_rect_boxes_no_flip_and_conventions(learning_run, synthetic_root, tmp_path):
    cfg = learning_run["cfg"]
    best = f"{cfg.work_dir}/best.pth"
    metrics = evaluate_checkpoint(synthetic_root, best, tmp_path, box="rect", flip_test=False)
    assert metrics["box_mode"] == "rect" and metrics["flip_test"] is False and metrics["num_faces"] == 8
    old = evaluate_checkpoint(synthetic_root, best, tmp_path / "0x", flip_convention="0.x")
    new = evaluate_checkpoint(synthetic_root, best, tmp_path / "1x", flip_convention="1.x")
    assert old["flip_convention"] == "0.x" and old["nme"] != new["nme"]
    with pytest.raises(ValueError, match="box 'face' is not supported"):
        evaluate_checkpoint(synthetic_root, best, tmp_path, box="face")
    with pytest.raises(ValueError, match="flip convention must be one of"):
        evaluate_checkpoint(synthetic_root, best, tmp_path, flip_convention="2.x")


def test_bf16_reports_its_deviation(learning_run, synthetic_root, tmp_path, capsys):
    cfg = learning_run["cfg"]
    metrics = evaluate_checkpoint(synthetic_root, f"{cfg.work_dir}/best.pth", tmp_path, precision="bf16",
                                  device="cpu")
    deviation = metrics["bf16_deviation_px"]
    assert metrics["precision"] == "bf16" and 0 < deviation["mean"] <= deviation["max"]
    assert "bf16 moved the points by" in capsys.readouterr().out
