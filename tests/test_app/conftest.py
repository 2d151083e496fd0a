"""Fixtures of the app tests: the face sets the browser and Compare work on, without a server, and
one ``python -m app`` per test module for the live-stream tests."""
from __future__ import annotations

import pytest

from app.context import AppContext
from app.wflw_data import WFLWTestSet
from training.evaluate import load_split
from model.formats.wflw import WFLWTree


@pytest.fixture
def split_context(synthetic_root, tmp_path):
    """An own-photo-style set over ``synthetic_root`` (kind "annotate": split "all" = 8 test then 32
    train faces, WFLW attribute flags ignored) in an ``AppContext`` without a model."""
    tree = WFLWTree(synthetic_root)
    samples, flags = load_split(tree, "all")
    ctx = AppContext(predictor=None, detector=None, testset=WFLWTestSet(tree, samples, flags, kind="annotate",
                                                                        num_test=8), output_dir=tmp_path)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def module_app(mean_shape_checkpoint, artifacts_dir, app_server, request):
    """``python -m app`` with the mean-shape checkpoint on the CPU, one per test module (its log:
    ``app-<module>.log`` in the artifacts)."""
    log = artifacts_dir / f"app-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    server = app_server(["--weights", str(mean_shape_checkpoint), "--device", "cpu"], log).start()
    yield server
    server.stop()
