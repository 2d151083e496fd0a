"""Ways to run the regressor: eager PyTorch, ONNX Runtime fp32, ONNX Runtime int8.

Every backend is a callable ``(N, S, S, 3) uint8 RGB crops -> (N, 98, 2) float32`` normalised crop
coordinates, so a ``Predictor``'s runner can be any of them; ``torch_forward`` is the one eager
forward (the torch backend, training's evaluation and the GPU benchmarks call it). The ONNX graphs take the
uint8 NHWC crops as they come from ``cv2.warpAffine`` and do the transpose, cast and mean/std
normalisation inside the graph (no float copy in numpy). The int8 graph is quantised statically
(per-channel weights, activation ranges calibrated on face crops) and keeps the final Linear in
fp32. Which backend wins, and by how much, is measured by ``python -m bench``
(its figures are in docs/performance.md); ``DEFAULT_CPU_BACKEND`` records the
outcome: ONNX Runtime fp32. The int8 graph runs the network about twice as fast but its landmarks
moved by several pixels from the fp32 model's on the benchmark checkpoint, far outside the
``ACCURACY_BOUND_PX`` bound, so it is opt-in.

Exported graphs are cached on disk by the sha256 of the weights (``cache_dir``, default
``$LANDMARK_STUDIO_CACHE`` or ``~/.cache/landmark-studio``), so an app restart does not re-export.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from model.constants import INPUT_SIZE
from model.io import atomic_write
from model.layout import NUM_LANDMARKS
from model.network import LandmarkRegressor, normalize

log = logging.getLogger(__name__)

TORCH, ONNX, ONNX_INT8, AUTO = "torch", "onnx", "onnx-int8", "auto"
BACKENDS = (TORCH, ONNX, ONNX_INT8)

# Arithmetic of the torch backend: fp32 on every device by default (as mmpose evaluates); bf16
# autocast only when asked (faster on recent GPUs; it moves points by about 0.1 px, see docs/performance.md).
FP32, BF16 = "fp32", "bf16"
PRECISIONS = (FP32, BF16)

# The fastest CPU backend whose landmarks stay within ACCURACY_BOUND_PX of eager fp32 on average
# (measured by `python -m bench`; int8 is faster but misses the bound). GPUs always use torch.
DEFAULT_CPU_BACKEND = ONNX

# The accuracy bound a faster backend must keep to be picked by "auto": the mean distance of its
# landmarks to the eager fp32 model's, in pixels of the 256 x 256 crop (``python -m bench`` and
# tests/test_model/test_backends.py check it).
ACCURACY_BOUND_PX = 0.5

# ONNX opset: 17 is supported by every onnxruntime since 1.14 and by torch's legacy exporter.
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "crops", "landmarks"

# Static int8 calibration: this many procedural face crops, drawn from this seed (see
# ``calibration_crops``); part of the cache key, so changing them re-quantises. Crops of real
# faces calibrate far better (the benchmark passes its own), so pass them when you have them.
CALIBRATION_COUNT = 32
CALIBRATION_SEED = 0
# Ops quantised to int8. The stem's Sub/Div (normalisation) and the final Gemm stay fp32: they are
# cheap, and quantising the regression output costs accuracy for no speed.
INT8_OP_TYPES = ("Conv", "Add", "MaxPool", "GlobalAveragePool")

CACHE_ENV = "LANDMARK_STUDIO_CACHE"
# Exported graphs kept in the cache (about 95 MB fp32, 25 MB int8 each); older ones are deleted.
MAX_CACHED_GRAPHS = 4


def default_cache_dir() -> Path:
    """``$LANDMARK_STUDIO_CACHE`` or ``~/.cache/landmark-studio``: where exported graphs are kept."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "landmark-studio")


def check_backend(name: str) -> str:
    """Return ``name`` if it is a known backend (or "auto"), else raise ``ValueError`` naming it."""
    if name not in (*BACKENDS, AUTO):
        raise ValueError(f"backend must be one of {', '.join((AUTO, *BACKENDS))}; got {name!r}")
    return name


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of ``PRECISIONS``, else raise ``ValueError`` naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def resolve_backend(name: str, device: torch.device, precision: str = FP32) -> str:
    """"auto" -> torch on CUDA (channels-last) or when bf16 is asked for, else ``DEFAULT_CPU_BACKEND``.

    ONNX Runtime here is the CPU build and runs the fp32 (or int8) graph, so asking for an ONNX
    backend on a GPU device, or with ``precision="bf16"``, is an error.
    """
    check_backend(name)
    check_precision(precision)
    if name == AUTO:
        return TORCH if device.type == "cuda" or precision == BF16 else DEFAULT_CPU_BACKEND
    if name != TORCH and device.type != "cpu":
        raise ValueError(f"backend {name!r} runs on CPU only; got device {str(device)!r} (use backend 'torch')")
    if name != TORCH and precision != FP32:
        raise ValueError(f"backend {name!r} has no {precision} mode; got precision {precision!r} (use backend 'torch')")
    return name


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend {auto,torch,onnx,onnx-int8}`` to a command line (for the app and CLIs)."""
    parser.add_argument(
        "--backend", default=AUTO, choices=(AUTO, *BACKENDS),
        help=f"how the network runs: {TORCH} (eager PyTorch), {ONNX} (ONNX Runtime fp32), {ONNX_INT8} "
             f"(ONNX Runtime, static int8); {AUTO} picks torch on GPU and {DEFAULT_CPU_BACKEND} on CPU "
             f"(default: {AUTO})")


def torch_forward(model: nn.Module, crops: torch.Tensor, precision: str = FP32,
                  channels_last: bool = False) -> torch.Tensor:
    """The one eager forward of the regressor: (N, S, S, 3) crops (uint8 or float, 0-255 scale, on
    the model's device) -> (N, 98, 2) float32, normalised inside (``model.network.normalize``),
    channels-last when asked, under bf16 autocast when ``precision`` is "bf16". Gradients are the
    caller's business (inference callers wrap it in ``torch.inference_mode``)."""
    x = normalize(crops)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == BF16):
        return model(x).float()


class TorchBackend:
    """Eager PyTorch, fp32 unless asked; channels-last on CUDA (and on CPU when asked).

    Args:
        model: the regressor (moved to ``device`` and set to eval here).
        device: where it runs.
        channels_last: use the channels-last memory format on CPU as well.
        precision: "fp32", or "bf16" for autocast to bfloat16 on the device (CUDA or CPU).

    Calling it takes numpy crops (copied to the device) or tensors already there (crops cut on the
    device, ``model.batching``) and returns numpy.
    """

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = False,
                 precision: str = FP32) -> None:
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.channels_last = channels_last or self.device.type == "cuda"
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops) -> np.ndarray:
        if not isinstance(crops, torch.Tensor):
            crops = torch.from_numpy(np.ascontiguousarray(crops))
        x = crops.to(self.device, non_blocking=True)
        return torch_forward(self.model, x, self.precision, self.channels_last).cpu().numpy()


class _UInt8Crops(nn.Module):
    """The regressor with its input normalisation in front: (N, S, S, 3) uint8 -> (N, 98, 2)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(crops))


def export_onnx(model: nn.Module, path: str | os.PathLike, size: int = INPUT_SIZE) -> Path:
    """Write the regressor as an ONNX graph taking (N, size, size, 3) uint8 crops (N dynamic)."""
    path = Path(path)
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    # The wrapper must be in eval mode itself: the exporter restores the wrapper's mode afterwards,
    # recursively, and a wrapper left in training mode would put ``model`` in training mode too.
    wrapper = _UInt8Crops(model.eval().cpu()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
    return path


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, crops: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights, min/max activation ranges from ``crops``).

    Args:
        fp32_path: a graph written by ``export_onnx``.
        out_path: where the int8 graph goes.
        crops: (N, S, S, 3) uint8 calibration crops of faces.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8 or len(crops) == 0:
        raise ValueError(f"calibration crops must be (N, S, S, 3) uint8 with N >= 1, got {crops.shape} {crops.dtype}")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(crops[i:i + 1] for i in range(len(crops)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference + graph clean-up
        quantize_static(str(prepared), str(out_path), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(INT8_OP_TYPES))
    return out_path


def calibration_crops(count: int = CALIBRATION_COUNT, seed: int = CALIBRATION_SEED,
                      size: int = INPUT_SIZE) -> np.ndarray:
    """(count, size, size, 3) uint8 procedural face crops for int8 calibration.

    Calibration needs activations in the range real face crops produce, not landmark truth: each
    crop is a skin-toned head ellipse filling the central 1 / 1.25 of the crop (as detector crops
    do), with eyes, brows, nose and mouth, on a textured background, under random tone, shift,
    scale and in-plane rotation.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), np.uint8)
    u = size / 256.0  # drawing unit: the shapes below are laid out on a 256 grid
    for i in range(count):
        background = rng.integers(0, 256, 3)
        noise = rng.normal(0.0, 20.0, (size, size, 1))
        img = np.clip(background + noise, 0, 255).astype(np.uint8)
        skin = rng.uniform(0.35, 1.0) * np.array([224, 172, 138])
        dark = rng.uniform(10, 70)
        c = (int(128 * u), int(128 * u))
        cv2.ellipse(img, c, (int(80 * u), int(100 * u)), 0, 0, 360, skin.tolist(), -1, cv2.LINE_AA)
        for side in (-1, 1):
            eye = (int((128 + side * 35) * u), int(110 * u))
            cv2.ellipse(img, eye, (int(16 * u), int(8 * u)), 0, 0, 360, (235, 235, 235), -1, cv2.LINE_AA)
            cv2.circle(img, eye, int(6 * u), (dark,) * 3, -1, cv2.LINE_AA)
            cv2.line(img, (eye[0] - int(20 * u), int(88 * u)), (eye[0] + int(20 * u), int(85 * u)),
                     (dark,) * 3, max(1, int(5 * u)), cv2.LINE_AA)
        cv2.line(img, c, (int(128 * u), int(150 * u)), (skin * 0.7).tolist(), max(1, int(4 * u)), cv2.LINE_AA)
        cv2.ellipse(img, (int(128 * u), int(180 * u)), (int(30 * u), int(10 * u)), 0, 0, 360,
                    (skin * np.array([0.8, 0.45, 0.45])).tolist(), -1, cv2.LINE_AA)
        angle, scale = rng.uniform(-30, 30), rng.uniform(0.85, 1.15)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * size
        out[i] = cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    return out


def weights_digest(model: nn.Module) -> str:
    """sha256 (hex, first 16) of the model's parameters and buffers: the export cache key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _prune_cache(cache: Path, keep: Path) -> None:
    """Delete all but the ``MAX_CACHED_GRAPHS`` most recently used graphs (never ``keep``)."""
    def last_used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:  # removed meanwhile by another process
            return 0.0

    graphs = sorted(cache.glob("regressor-*.onnx"), key=last_used, reverse=True)
    for old in [g for g in graphs if g != keep][MAX_CACHED_GRAPHS - 1:]:
        old.unlink(missing_ok=True)


def onnx_model_path(model: nn.Module, int8: bool, cache_dir: str | os.PathLike | None = None,
                    calibration: np.ndarray | None = None) -> Path:
    """The cached ONNX graph for ``model`` (exported, and quantised for int8, when missing).

    Args:
        model: the regressor.
        int8: return the static int8 graph rather than fp32.
        cache_dir: folder for the graphs (``default_cache_dir()`` when ``None``).
        calibration: (N, S, S, 3) uint8 face crops for int8 calibration; ``None`` uses
            ``calibration_crops()``. Part of the cache key.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = weights_digest(model)
    fp32 = cache / f"regressor-{key}-fp32.onnx"
    if not fp32.is_file():
        log.info("exporting the regressor to ONNX: %s", fp32)
        atomic_write(fp32, lambda tmp: export_onnx(model, tmp))
        _prune_cache(cache, keep=fp32)
    if not int8:
        fp32.touch()  # most recently used
        return fp32
    crops = calibration_crops() if calibration is None else np.ascontiguousarray(calibration)
    calib_key = hashlib.sha256(crops.tobytes()).hexdigest()[:8]
    quant = cache / f"regressor-{key}-int8-{calib_key}.onnx"
    if not quant.is_file():
        log.info("quantising the regressor to int8 on %d calibration crops: %s", len(crops), quant)
        atomic_write(quant, lambda tmp: quantize_onnx(fp32, tmp, crops))
    quant.touch()
    _prune_cache(cache, keep=quant)
    return quant


def cpu_session(path: str | os.PathLike, threads: int | None = None, memory_arena: bool = True):
    """An ONNX Runtime CPU session for the graph at ``path``: every graph optimisation, sequential
    execution, ``threads`` intra-op threads (default: one per CPU core).

    ``memory_arena=False`` frees every activation after each run: ONNX Runtime's arena keeps the
    largest run's memory for the session's life, right for fixed-size inputs but not for a graph
    whose input size changes with every photo.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX graph not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: the detector and the other half of the app
    # share these cores, and spinning slowed the whole pipeline on the 2-core machines.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = memory_arena
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """ONNX Runtime on CPU, one intra-op thread per core, sequential execution.

    Args:
        path: an ONNX graph from ``export_onnx`` or ``quantize_onnx``.
        threads: intra-op threads (default: the number of CPU cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = cpu_session(path, threads)

    def __call__(self, crops) -> np.ndarray:
        """(N, S, S, 3) uint8 crops (numpy, or a CPU tensor of whole grey levels) -> (N, 98, 2) float32."""
        if isinstance(crops, torch.Tensor):
            crops = crops.detach().cpu().numpy()
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(crops, dtype=np.uint8)})[0]
        return out.reshape(-1, NUM_LANDMARKS, 2).astype(np.float32, copy=False)


def build_backend(name: str, model: LandmarkRegressor, device: torch.device,
                  cache_dir: str | os.PathLike | None = None, calibration: np.ndarray | None = None,
                  precision: str = FP32):
    """The callable for backend ``name`` ("auto" resolved for ``device``); see the module docstring."""
    name = resolve_backend(name, device, precision)
    if name == TORCH:
        return TorchBackend(model, device, precision=precision)
    return OnnxBackend(onnx_model_path(model, int8=name == ONNX_INT8, cache_dir=cache_dir,
                                       calibration=calibration))
