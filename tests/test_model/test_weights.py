"""Download tests against a real HTTP server on 127.0.0.1 standing in for download.openmmlab.com."""
import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from model.weights import (
    WeightsUnavailableError, WeightsVerificationError, cached_path, download, official_weights,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
GOOD_PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/dropped/"):
            # announce the whole file, send a third of it, then close the connection
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.close()
            return
        if self.path.startswith("/missing/"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_is_verified_and_renamed(server, tmp_path):
    dest = tmp_path / "weights-abc.pth"
    assert download(f"{server}/ok/weights-abc.pth", dest, sha256_prefix=GOOD_PREFIX, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["weights-abc.pth", "weights-abc.pth.verified"]
    assert json.loads((tmp_path / "weights-abc.pth.verified").read_text())["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    # a second call uses the file and does not fetch again (the URL would now 404)
    assert download(f"{server}/missing/x", dest, progress=False) == dest
    assert download(f"{server}/missing/x", dest, sha256_prefix=GOOD_PREFIX, progress=False) == dest


def test_bad_hash_leaves_nothing(server, tmp_path):
    dest = tmp_path / "w.pth"
    with pytest.raises(ValueError, match="corrupt: sha256 .* does not start with deadbeef"):
        download(f"{server}/ok/w.pth", dest, sha256_prefix="deadbeef", progress=False)
    assert _leftovers(tmp_path) == []


def test_dropped_connection_leaves_nothing_and_retry_works(server, tmp_path):
    dest = tmp_path / "w.pth"
    with pytest.raises(OSError, match=r"stopped after \d+ of 1048576 bytes"):
        download(f"{server}/dropped/w.pth", dest, sha256_prefix=GOOD_PREFIX, progress=False)
    assert _leftovers(tmp_path) == []
    download(f"{server}/ok/w.pth", dest, sha256_prefix=GOOD_PREFIX, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_official_weights_go_to_the_hub_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"{server}/ok/deeppose-{GOOD_PREFIX}.pth"
    path = official_weights(url=url, sha256_prefix=GOOD_PREFIX)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / f"deeppose-{GOOD_PREFIX}.pth"
    assert path == cached_path(url) and path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == [path.name, path.name + ".verified"]


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError) as err:
        official_weights(url="http://127.0.0.1:9/deeppose.pth", timeout=5)  # port 9: nothing listens
    message = str(err.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "deeppose.pth") in message
    assert "--weights PATH" in message and "could not be downloaded" in message
    with pytest.raises(WeightsUnavailableError, match="not cached at"):
        official_weights(download_if_missing=False, url="http://127.0.0.1:9/deeppose.pth")
    assert _leftovers(tmp_path / "torch" / "hub" / "checkpoints") == []


def test_a_file_copied_in_by_hand_is_verified_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = "http://127.0.0.1:9/deeppose-copied.pth"  # nothing listens: only the cached file can serve
    path = cached_path(url)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    assert official_weights(url=url, sha256_prefix=GOOD_PREFIX) == path
    marker = path.with_name(path.name + ".verified")
    record = json.loads(marker.read_text())
    assert record == {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "size": len(PAYLOAD),
                      "mtime_ns": path.stat().st_mtime_ns}
    # once: the next start trusts the record while size and mtime are unchanged (no re-hash) ...
    stat = path.stat()
    path.write_bytes(bytes(len(PAYLOAD)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert official_weights(url=url, sha256_prefix=GOOD_PREFIX) == path
    # ... and a replaced file (new mtime) is hashed again, and refused
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(WeightsVerificationError, match="not the expected weights file"):
        official_weights(url=url, sha256_prefix=GOOD_PREFIX)


def test_a_wrong_file_in_the_cache_is_refused_with_what_to_do(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"{server}/ok/deeppose-wrong.pth"  # would serve the right file: the cached one must not be replaced silently
    path = cached_path(url)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[:1000])
    actual = hashlib.sha256(PAYLOAD[:1000]).hexdigest()[:8]
    for _ in range(2):  # refused every time, never recorded as verified
        with pytest.raises(WeightsVerificationError) as err:
            official_weights(url=url, sha256_prefix=GOOD_PREFIX)
        assert str(err.value) == (
            f"{path} is not the expected weights file: its sha256 starts with {actual}, not {GOOD_PREFIX} "
            f"(a partial copy or a different checkpoint). Delete it and download {url} again (the sha256 must "
            f"start with {GOOD_PREFIX}), or pass --weights PATH to use it as your own checkpoint.")
        assert _leftovers(path.parent) == [path.name]
    assert isinstance(err.value, WeightsUnavailableError)  # the app shows it in its "not loaded" banner
    with pytest.raises(WeightsVerificationError):
        download(url, path, sha256_prefix=GOOD_PREFIX, progress=False)
    path.unlink()  # as the message says: delete it, and the next start downloads the right one
    assert official_weights(url=url, sha256_prefix=GOOD_PREFIX).read_bytes() == PAYLOAD


def test_file_sha256_matches_hashlib_over_several_chunks(tmp_path):
    from model.weights import file_sha256

    data = bytes(range(256)) * 9000 + b"tail"  # about 2.2 MB: more than one read buffer
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
