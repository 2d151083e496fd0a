"""Fixtures of the app tests: the face sets the browser and Compare work on, without a server."""
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
