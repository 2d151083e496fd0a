import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from model.layout import ATTRIBUTES, NUM_LANDMARKS
from model.network import load_regressor
from model.pipeline import Predictor
from model.weights import file_sha256
from training.evaluate import (PREDICTIONS_META_KEYS, EvaluationCancelled, evaluate_checkpoint,
                               load_split, main, predict_samples, prediction_meta, read_predictions,
                               read_predictions_meta, resolve_flip_convention, write_predictions)
from training.prepare import IMAGES_GDRIVE_ID
from model.formats.wflw import WFLWTree, find_wflw_root, load_test_split, write_wflw_txt
from tests.helpers import REPO


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
    (lambda d: d["faces"].pop(), "p.json: 7 faces, but the test split has 8"),
    (lambda d: d["faces"][2].update(index=1), "p.json face record 2: index 1 appears twice"),
    (lambda d: d["faces"][4].update(index=99), r"p.json face record 4: index 99 outside the test split \(0..7\)"),
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
    assert calls == [(8, 8)]  # one forward pass of all 8 faces (one per image here)
    calls.clear()
    again = predict_samples(predictor, samples, tree.images, "landmarks", batch_size=3,
                            progress=lambda i, n: calls.append((i, n)))
    assert calls == [(3, 8), (6, 8), (8, 8)]  # after each pass: the images whose faces are done
    np.testing.assert_allclose(again, pred, atol=1e-3)  # fp32 convolutions differ by batch size at ~1e-6
    # the same predictions face by face through predict_boxes (row order = sample order)
    from model.image import read_image
    from model.formats.wflw import crop_box, resolve_image
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
    assert result["config"].flip_convention == "0.x"  # the default recipe's, stored in the checkpoint
    # --flip-convention auto (the default) evaluates with the checkpoint's own, as training did
    assert main(["--wflw-root", str(learning_root), "--weights", weights, "--out", str(tmp_path), "--device", "cpu"]) == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["flip_convention_source"] == "checkpoint"
    assert written["num_faces"] == num_faces and written["box_mode"] == "landmarks"
    assert written["input_size"] == cfg.input_size and written["precision"] == "fp32"
    assert written["flip_convention"] == "0.x" and written["sha256"] == file_sha256(weights)
    assert set(written["subsets"]) == set(ATTRIBUTES)
    assert {"nme", "fr@0.1", "auc@0.1", "num_faces"} <= set(written["subsets"]["pose"])
    # image-space NME through the pipeline = the crop-space NME of training's evaluation (same
    # crops, same flip convention). Training ran on the default device: on a CUDA host its TF32
    # convolutions move points by ~0.015 px, which moves this NME by well under 0.5 %.
    assert written["nme"] == pytest.approx(100 * result["last"]["nme"], rel=5e-3)
    samples, _ = load_test_split(find_wflw_root(learning_root))
    pred = read_predictions(tmp_path / "predictions.json", samples)
    assert pred.shape == (num_faces, NUM_LANDMARKS, 2)
    assert read_predictions_meta(tmp_path / "predictions.json")["checkpoint"] == "checkpoint.pth"
    assert (tmp_path / "ced.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "Testset" in out and "Occlusion" in out and "input size: 32" in out and "flip test: on (0.x, checkpoint)" in out


# The options below run on the 8-face synthetic set (same image size as the learning set).


def test_rect_boxes_no_flip_and_conventions(learning_run, synthetic_root, tmp_path):
    cfg = learning_run["cfg"]
    best = f"{cfg.work_dir}/best.pth"
    metrics = evaluate_checkpoint(synthetic_root, best, tmp_path, box="rect", flip_test=False, device="cpu")
    assert metrics["box_mode"] == "rect" and metrics["flip_test"] is False and metrics["num_faces"] == 8
    old = evaluate_checkpoint(synthetic_root, best, tmp_path / "0x", flip_convention="0.x", device="cpu")
    new = evaluate_checkpoint(synthetic_root, best, tmp_path / "1x", flip_convention="1.x", device="cpu")
    assert old["flip_convention"] == "0.x" and old["nme"] != new["nme"]
    assert old["flip_convention_source"] == new["flip_convention_source"] == "given"
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


# ----------------------------------------------------------------------------- batching across images


@pytest.fixture()
def four_faces_two_images(test_split):
    """Four faces on two images (two WFLW rectangles each: the annotated one and one 10 % smaller)."""
    from dataclasses import replace

    tree, samples = test_split
    faces = []
    for s in samples[:2]:
        center, half = (s.box[:2] + s.box[2:]) / 2, (s.box[2:] - s.box[:2]) / 2
        faces += [s, replace(s, box=np.concatenate([center - 0.9 * half, center + 0.9 * half]).astype(np.float32))]
    return tree, faces


def _count_forwards(model):
    rows = []
    handle = model.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    return rows, handle


@pytest.mark.parametrize("flip_test, batch_size, passes", [
    (True, 8, [8]),          # 4 faces + their mirrors, one pass
    (False, 8, [4]),
    (True, 3, [6, 2]),       # 3 faces (+ mirrors), then the last one
    (False, 1, [1, 1, 1, 1]),
])
def test_faces_of_many_images_share_a_forward_pass(random_regressor, four_faces_two_images, flip_test,
                                                   batch_size, passes):
    tree, faces = four_faces_two_images
    predictor = Predictor(random_regressor, device="cpu", backend="torch", input_size=32, flip_test=flip_test)
    rows, handle = _count_forwards(predictor.model)
    try:
        pred = predict_samples(predictor, faces, tree.images, "rect", batch_size=batch_size)
    finally:
        handle.remove()
    assert rows == passes
    # the same points as one predict_boxes call per image (the app's path), row for row
    from model.image import read_image
    from model.formats.wflw import resolve_image
    for first in (0, 2):
        image = read_image(resolve_image(tree.images, faces[first].image))
        alone = predictor.predict_boxes(image, np.stack([faces[first].box, faces[first + 1].box]))
        np.testing.assert_allclose(pred[first:first + 2], alone, atol=1e-3)


def test_batched_nme_equals_the_per_image_path(learning_run, test_split):
    """fp32 NME of the batched evaluation = NME of one predict_boxes call per face."""
    from model.image import read_image
    from training.metrics import nme
    from model.formats.wflw import crop_box, resolve_image

    cfg = learning_run["cfg"]
    tree, samples = test_split
    predictor = Predictor(load_regressor(f"{cfg.work_dir}/best.pth"), device="cpu", backend="torch",
                          input_size=cfg.input_size, flip_convention="0.x")
    pred = predict_samples(predictor, samples, tree.images, batch_size=5)
    one_by_one = np.concatenate([predictor.predict_boxes(read_image(resolve_image(tree.images, s.image)),
                                                         crop_box(s, "landmarks")[None]) for s in samples])
    gt = np.stack([s.landmarks for s in samples])
    assert pred.dtype == np.float32 and pred.shape == (8, NUM_LANDMARKS, 2)
    np.testing.assert_allclose(nme(pred, gt), nme(one_by_one, gt), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1 .*got 0"):
        predict_samples(predictor, samples, tree.images, batch_size=0)


def test_device_crops_path_matches_the_cv2_path(learning_run, test_split):
    """The GPU path (gpu_crops + the torch model on the device) run on CPU tensors: the same points as
    cv2.warpAffine crops, to within cv2's fixed-point sampling."""
    cfg = learning_run["cfg"]
    tree, samples = test_split
    predictor = Predictor(load_regressor(f"{cfg.work_dir}/best.pth"), device="cpu", backend="torch",
                          input_size=cfg.input_size)
    cv2_path = predict_samples(predictor, samples, tree.images, "landmarks", crops_on_device=False)
    device_path = predict_samples(predictor, samples, tree.images, "landmarks", crops_on_device=True)
    distance = np.linalg.norm(device_path - cv2_path, axis=-1)
    assert distance.mean() < 0.05 and distance.max() < 0.5  # px in 64-px images


def test_flip_convention_auto_reads_the_checkpoint():
    assert resolve_flip_convention("auto", {"flip_convention": "0.x"}) == ("0.x", "checkpoint")
    assert resolve_flip_convention("auto", {}) == ("1.x", "default")  # mmpose files store none
    assert resolve_flip_convention("1.x", {"flip_convention": "0.x"}) == ("1.x", "given")
    with pytest.raises(ValueError, match=r"w.pth: config.flip_convention '2.x' is not one of 1.x, 0.x"):
        resolve_flip_convention("auto", {"flip_convention": "2.x"}, "w.pth")


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "argument --device: invalid device 'tpu': choose auto|cpu|cuda|cuda:N"),
    (["--flip-convention", "2.x"], "argument --flip-convention: invalid choice: '2.x'"),
    (["--batch-size", "0"], "argument --batch-size: expected a whole number of at least 1, got 0"),
])
def test_bad_flags_are_refused_before_any_work(tmp_path, capsys, argv, message):
    # the WFLW root does not exist: the flag is refused first, at parse time
    with pytest.raises(SystemExit) as exit_info:
        main(["--wflw-root", str(tmp_path / "nowhere"), "--weights", "w.pth", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_flip_test_is_a_hidden_alias(tmp_path):
    from training.evaluate import parse_args

    base = ["--wflw-root", "r", "--weights", "w", "--out", "o"]
    assert parse_args(base + ["--no-flip-test"]).no_flip and parse_args(base + ["--no-flip"]).no_flip
    assert not parse_args(base).no_flip and parse_args(base).device == "auto"


# ----------------------------------------------------------------------------- splits


def test_load_split_gives_test_then_train(synthetic_root, tmp_path):
    tree = find_wflw_root(synthetic_root)
    test, test_flags = load_split(tree, "test")
    train, train_flags = load_split(tree, "train")
    both, flags = load_split(tree, "all")
    assert (len(test), len(train), len(both)) == (8, 32, 40)
    assert [s.image for s in both] == [s.image for s in test + train]  # test first: the app's order
    assert flags.shape == (40, len(ATTRIBUTES)) and np.array_equal(flags, np.concatenate([test_flags, train_flags]))
    with pytest.raises(ValueError, match="split must be one of test, train, all, got 'val'"):
        load_split(tree, "val")
    empty = WFLWTree(tmp_path)
    write_wflw_txt(empty.annotations("test"), [])
    write_wflw_txt(empty.annotations("train"), train[:2])
    with pytest.raises(ValueError, match=r"the test split of .* has no faces \(list_98pt_rect_attr_test.txt empty\)"):
        load_split(empty, "test")
    assert len(load_split(empty, "all")[0]) == 2


def test_predictions_are_read_for_their_own_split_only(test_split, tmp_path):
    tree, test = test_split
    train, _ = load_split(tree, "train")
    meta = {**_meta(tmp_path / "w.pth"), "split": "train"}
    path = write_predictions(tmp_path / "p.json", train, np.stack([s.landmarks for s in train]), meta)
    assert read_predictions_meta(path)["split"] == "train"
    assert read_predictions(path, train, "train").shape == (32, NUM_LANDMARKS, 2)
    with pytest.raises(ValueError, match=r"p.json holds predictions for the train split \(32 faces\), not the test "
                                         r"split \(8 faces\); make them with python -m training.evaluate --split test"):
        read_predictions(path, test)
    # a file whose meta names no split holds the test split
    data = json.loads(write_predictions(path, test, np.stack([s.landmarks for s in test]), meta | {"split": "test"})
                      .read_text())
    del data["meta"]["split"]
    path.write_text(json.dumps(data))
    assert read_predictions_meta(path)["split"] == "test"
    assert read_predictions(path, test).shape == (8, NUM_LANDMARKS, 2)
    with pytest.raises(ValueError, match=r"holds predictions for the test split \(8 faces\), not the all split"):
        read_predictions(path, test + train, "all")
    with pytest.raises(ValueError, match="split must be one of test, train, all, got 'val'"):
        write_predictions(tmp_path / "q.json", test, np.stack([s.landmarks for s in test]), meta | {"split": "val"})


def test_evaluate_a_chosen_split(learning_run, synthetic_root, tmp_path, capsys):
    best = f"{learning_run['cfg'].work_dir}/best.pth"
    assert main(["--wflw-root", str(synthetic_root), "--weights", best, "--out", str(tmp_path), "--device", "cpu",
                 "--split", "train"]) == 0
    text = (tmp_path / "metrics.json").read_text()
    written = json.loads(text, parse_constant=lambda name: pytest.fail(f"metrics.json holds {name}"))
    assert written["split"] == "train" and written["num_faces"] == 32
    for name, row in written["subsets"].items():  # a subset without faces has no numbers, not NaN
        assert (row["num_faces"] == 0) == (row["nme"] is None), name
    assert read_predictions_meta(tmp_path / "predictions.json")["split"] == "train"
    train, _ = load_split(find_wflw_root(synthetic_root), "train")
    assert read_predictions(tmp_path / "predictions.json", train, "train").shape == (32, NUM_LANDMARKS, 2)
    out = capsys.readouterr().out
    assert out.startswith("train split, 32 faces (the first column is the whole split)\n")
    assert "split: train, box: landmarks" in out and "faces: 32" in out


def test_a_folder_that_is_not_a_wflw_root_is_one_line(synthetic_root, tmp_path):
    """An unpacked annotation archive without WFLW_images/: exit status 2 and one line that names the
    folder, what is missing and how to get it, before the checkpoint is read."""
    root = tmp_path / "annotations-only"
    shutil.copytree(synthetic_root / "WFLW_annotations", root / "WFLW_annotations")
    proc = subprocess.run([sys.executable, "-m", "training.evaluate", "--wflw-root", str(root), "--weights",
                           str(tmp_path / "missing.pth"), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"python -m training.evaluate: error: --wflw-root {root}: not a WFLW root, "
                           "missing WFLW_images/; WFLW_images/ comes from WFLW_images.tar.gz on Google Drive")
    assert f"gdown {IMAGES_GDRIVE_ID}" in line
    assert line.endswith(f"python -m training.prepare --images WFLW_images.tar.gz --annotations "
                         f"WFLW_annotations.tar.gz --out {root}")
    assert not (tmp_path / "out").exists()
