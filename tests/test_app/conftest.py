"""Fixtures of the app tests: a mean-shape checkpoint, a small WFLW tree, a live app server, chromium."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from model.constants import COORD_SCALE
from model.geometry import apply_affine, box_to_crop, crop_matrix, landmark_box

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_TIMEOUT = 180.0


def mean_shape(subset_dir: Path) -> np.ndarray:
    """(98, 2) mean WFLW face in normalised crop coordinates (crop pixels / 256), over the distinct
    faces of the six test subset lists, each cropped from its landmark box as evaluation does."""
    from training.wflw import load_wflw_txt

    faces = {}
    for path in sorted(subset_dir.glob("list_98pt_test_*.txt")):
        for s in load_wflw_txt(path):
            faces[s.key()] = s.landmarks
    shapes = []
    for pts in faces.values():
        center, side = box_to_crop(landmark_box(pts))
        shapes.append(apply_affine(pts, crop_matrix(center, side)) / COORD_SCALE)
    return np.mean(shapes, axis=0)


def write_mean_shape_checkpoint(path: Path, subset_dir: Path) -> Path:
    """A LandmarkRegressor that ignores its input and outputs the mean face: fc.weight = 0,
    fc.bias = the mean shape. A placeholder for screenshots and tests, NOT the trained model."""
    from model.network import LandmarkRegressor

    torch.manual_seed(0)
    net = LandmarkRegressor()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.copy_(torch.from_numpy(mean_shape(subset_dir).astype(np.float32).reshape(-1)))
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def mean_shape_checkpoint(tmp_path_factory, shared_data) -> Path:
    return write_mean_shape_checkpoint(tmp_path_factory.mktemp("meanshape") / "mean_shape.pth",
                                       shared_data / "wflw-test-subsets")


@pytest.fixture(scope="session")
def small_wflw_root(tmp_path_factory, shared_data) -> Path:
    """A WFLW-layout tree: 6 synthetic test faces plus the 4 real mmpose WFLW faces (test list)."""
    from training.synthetic import write_synthetic_wflw
    from training.wflw import Sample, WFLWTree, load_wflw_json, load_wflw_txt, write_wflw_txt

    root = tmp_path_factory.mktemp("wflw")
    write_synthetic_wflw(root, num_train=1, num_test=6, size=256, seed=3)
    tree = WFLWTree(root)
    real_dir = shared_data / "mmpose-tests" / "wflw"
    (tree.images / "real").mkdir(parents=True, exist_ok=True)
    real = []
    for s in load_wflw_json(real_dir / "test_wflw.json"):
        target = tree.images / "real" / s.image
        if not target.exists():
            shutil.copy(real_dir / s.image, target)
        # The mmpose JSON has no attribute flags: mark the real faces as "occlusion" for the filter test.
        real.append(Sample(f"real/{s.image}", s.landmarks, landmark_box(s.landmarks).astype(np.float32),
                           (False, False, False, False, True, False)))
    test = load_wflw_txt(tree.annotations("test")) + real
    write_wflw_txt(tree.annotations("test"), test)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python -m app ...`` as a real subprocess on a free port."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self.args = args
        self.env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
                        PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = None

    def start(self) -> "AppServer":
        self._log = open(self.log_path, "ab")
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
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app did not answer within {SERVER_START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        self.proc = None


@pytest.fixture
def start_app(artifacts_dir, request):
    """Factory: ``start_app(args, env=None)`` starts a server; all are stopped after the test."""
    servers = []

    def start(args: list[str], env: dict | None = None) -> AppServer:
        name = f"app-{request.node.name}-{len(servers)}.log".replace("/", "_")
        server = AppServer([str(a) for a in args], artifacts_dir / name, env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser_factory():
    """Launch Debian's chromium through Playwright (extra args per launch).

    A missing browser or Playwright fails the test (never skips it): ``make test`` installs both,
    and a skip would pass the browser tests off as run.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"the browser tests need Playwright ({exc}); install requirements.txt into the venv "
                    "(make install)", pytrace=False)
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}, not found: run `make chromium` "
                    "(apt-get install chromium); never `playwright install`", pytrace=False)
    with sync_playwright() as p:
        browsers = []

        def launch(extra: list[str] | None = None):
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + (extra or []))
            browsers.append(b)
            return b

        yield launch
        for b in browsers:
            b.close()


@pytest.fixture(scope="session")
def app_server():
    """The ``AppServer`` class, for tests that manage a server's life themselves (restarts)."""
    return AppServer


@pytest.fixture(scope="session")
def viewport() -> dict:
    return dict(VIEWPORT)
