"""Fixtures shared by every test folder: paths into ../shared/data and a small random checkpoint."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ARTIFACTS = REPO / "test-artifacts"

# Exported ONNX graphs of the tests' throwaway weights go to a per-run folder, not the user's cache
# (inherited by the app servers the tests start).
os.environ["LANDMARK_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="landmark-studio-test-cache-")


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


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["LANDMARK_STUDIO_CACHE"], ignore_errors=True)
