"""Helpers shared by the test folders (plain functions and classes; the fixtures are in conftest.py).

Test modules import from here, never from one another or from a conftest.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

# Debian's chromium, its flags and free_port have one home, shared with the benchmarks.
from bench.browser import CHROMIUM as CHROMIUM, CHROMIUM_ARGS as CHROMIUM_ARGS
from bench.common import REPO
from bench.common import constant_regressor as constant_regressor  # re-exported: the stand-in model
from bench.common import free_port as free_port
from bench.common import SHARED_DATA as SHARED_DATA  # re-exported: the tests' path to ../shared/data
from model.layout import EYE_CORNERS, NUM_LANDMARKS

ARTIFACTS = REPO / "test-artifacts"

# A cold `python -m app` imports torch and gradio and builds MTCNN: about 20 s on 2 busy cores.
SERVER_START_TIMEOUT = 180.0

# The JSON record of the CLI and of the app's /predict (SPEC section 5): required and optional keys.
RECORD_KEYS = {"image", "width", "height", "faces"}
OPTIONAL_RECORD_KEYS = {"warning"}
FACE_KEYS = {"box", "score", "landmarks"}
OPTIONAL_FACE_KEYS = {"nme", "flip_error", "face_id"}


def save_constant_checkpoint(path: Path, shape01) -> Path:
    """``constant_regressor(shape01)`` saved as a plain state dict at ``path``; returns ``path``."""
    torch.save(constant_regressor(shape01).state_dict(), path)
    return path


def save_small_checkpoint(path: Path, shape01, input_size: int = 64) -> Path:
    """A fast stand-in for the trained model, as a project checkpoint at ``path``: ``input_size`` px
    crops, ``shape01`` plus a small input-dependent term (so every face gets its own points and
    flip error). Returns ``path``."""
    model = constant_regressor(shape01)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator) * 1e-4)
    torch.save({"model": model.state_dict(), "config": {"input_size": input_size}}, path)
    return path


def shifted(samples, fractions) -> np.ndarray:
    """(N, 98, 2) predictions: every point of face i moved right by fractions[i] x its inter-ocular
    distance, so that face i's NME is exactly fractions[i]."""
    gt = np.stack([s.landmarks for s in samples]).astype(np.float64)
    iod = np.linalg.norm(gt[:, EYE_CORNERS[0]] - gt[:, EYE_CORNERS[1]], axis=1)
    out = gt.copy()
    out[..., 0] += np.asarray(fractions, dtype=np.float64)[:, None] * iod[:, None]
    return out.astype(np.float32)


def mean_wflw_shape(subset_dir: Path) -> np.ndarray:
    """(98, 2) float32 mean WFLW face in crop coordinates / crop side, over the distinct faces of
    the six test subset lists, each cropped from its landmark box as evaluation crops it."""
    from model.codec import encode
    from model.constants import INPUT_SIZE
    from model.geometry import apply_affine, box_to_crop, crop_matrix, landmark_box
    from model.formats.wflw import load_wflw_txt

    faces = {}
    for path in sorted(Path(subset_dir).glob("list_98pt_test_*.txt")):
        for s in load_wflw_txt(path):
            faces[s.key()] = s.landmarks
    if not faces:
        raise FileNotFoundError(f"no list_98pt_test_*.txt with faces in {subset_dir}")
    shapes = []
    for pts in faces.values():
        center, side = box_to_crop(landmark_box(pts))
        shapes.append(encode(apply_affine(pts, crop_matrix(center, side, output_size=INPUT_SIZE)), INPUT_SIZE)[0])
    return np.mean(shapes, axis=0).astype(np.float32)


def unsupported_dds(width: int = 8, height: int = 8) -> bytes:
    """A DDS texture in a compressed pixel format (FourCC "ATI9") that Pillow does not implement:
    its decoder raises ``NotImplementedError``."""
    pixel_format = struct.pack("<II4sIIIII", 32, 0x4, b"ATI9", 0, 0, 0, 0, 0)
    header = (struct.pack("<IIIIIII", 124, 0x1007, height, width, 0, 0, 0) + b"\0" * 44 + pixel_format
              + struct.pack("<IIIII", 0x1000, 0, 0, 0, 0))
    return b"DDS " + header + b"\0" * 256


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` RGB pixels but holds almost no data: what a
    decompression bomb looks like to a reader that checks the header first."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def assert_record_schema(record: dict, image: str, faces: int | None = None,
                         size: tuple[int, int] | None = None, flip_error: bool | None = None) -> None:
    """Assert ``record`` is the CLI's and /predict's JSON record (SPEC section 5).

    Args:
        record: the parsed JSON.
        image: the expected ``"image"`` (file name).
        faces: the expected number of faces (any when None).
        size: the expected (width, height) (any positive when None).
        flip_error: True when every face must carry ``"flip_error"`` (flip test on), False when none
            may; either when None.
    """
    assert RECORD_KEYS <= set(record) <= RECORD_KEYS | OPTIONAL_RECORD_KEYS, sorted(record)
    assert record["image"] == image
    width, height = record["width"], record["height"]
    assert isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
    if size is not None:
        assert (width, height) == tuple(size)
    if faces is not None:
        assert len(record["faces"]) == faces, record.get("warning")
    for face in record["faces"]:
        assert FACE_KEYS <= set(face) <= FACE_KEYS | OPTIONAL_FACE_KEYS, sorted(face)
        box = np.asarray(face["box"], dtype=np.float64)
        assert box.shape == (4,) and box[2] > box[0] and box[3] > box[1], face["box"]
        assert 0.0 < face["score"] <= 1.0
        assert np.asarray(face["landmarks"], dtype=np.float64).shape == (NUM_LANDMARKS, 2)
        if flip_error is not None:
            assert ("flip_error" in face) == flip_error, sorted(face)


def refuse_skips(session) -> None:
    """Turn a green run with skipped tests red: this suite never skips (a skipped browser or
    server test would pass off as run). Called from ``pytest_sessionfinish``."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and session.exitstatus == 0:
        session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED
        names = ", ".join(sorted({getattr(r, "nodeid", "?") for r in skipped}))
        reporter.ensure_newline()
        reporter.write_line(f"{len(skipped)} skipped ({names}): the suite never skips; a missing "
                            "tool or file must fail the test with a message", red=True)


class AppServer:
    """``python -m app ...`` as a real subprocess on a free loopback port, its output in ``log_path``."""

    def __init__(self, args: list, log_path: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_path)
        self.args = [str(a) for a in args]
        self.env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
                        PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = None
        self._log = None
        self.log_offset = 0

    def start(self) -> "AppServer":
        """Start the server and wait (polling its /gradio_api/info, up to ``SERVER_START_TIMEOUT``; a
        401 answer, sign-in required, counts as up)."""
        self._log = open(self.log_path, "ab")
        self.log_offset = self._log.tell()  # the log file may hold earlier runs' output
        self.proc = subprocess.Popen([sys.executable, "-m", "app", *self.args, "--port", str(self.port)],
                                     cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=5) as r:
                    if r.status == 200:
                        return self
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, with sign-in required (--auth-file)
                    return self
                time.sleep(0.5)
            except OSError:
                time.sleep(0.5)  # polling a subprocess with a deadline, not waiting on a page
        self.stop()
        raise RuntimeError(f"app did not answer within {SERVER_START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        """The last 5000 characters the server wrote."""
        return self.this_run_log()[-5000:]

    def this_run_log(self) -> str:
        """Everything this server process wrote (not the earlier runs appended to the same file)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(getattr(self, "log_offset", 0))
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate (then kill after 20 s) the server; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None


def open_tab(page, name: str) -> None:
    """Open a tab of the page by name; on a phone the later tabs sit behind the "…" overflow button."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.is_visible():
        tab.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).click()
    expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")


def square_photo(path: Path, side: int) -> np.ndarray:
    """A real photo read and resized to (side, side, 3) uint8 RGB: a face to paste into test frames."""
    import cv2

    from model.image import read_image

    return cv2.resize(read_image(path), (side, side), interpolation=cv2.INTER_AREA)


def engine_threads() -> list:
    """The live worker threads of ``model.engine.InferenceEngine`` (named "inference-engine")."""
    import threading

    return [t for t in threading.enumerate() if t.name == "inference-engine" and t.is_alive()]
