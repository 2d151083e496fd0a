"""The DeepPose-style regressor: torchvision ResNet-50 trunk, global pooling, one Linear to 98 x 2.

``LandmarkRegressor`` maps a normalised image batch to landmark positions and knows nothing of
boxes, flips or losses. ``read_checkpoint`` is the one place that reads weights from disk (with
``weights_only=True``); ``load_checkpoint`` / ``load_regressor`` build the model from it.
"""
from __future__ import annotations

import os
import pickle
import re
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet50

from model.constants import MIN_INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
from model.layout import NUM_LANDMARKS

try:  # numpy >= 2 (and the 1.26 forward alias)
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy.core.multiarray import scalar as _numpy_scalar

FEATURE_DIM = 2048  # ResNet-50's final channel count

# Parameter names kept identical to torchvision's resnet50 so that ImageNet weights load as they
# are and mmpose's "backbone.<name>" keys map by dropping the prefix.
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class LandmarkRegressor(nn.Module):
    """ResNet-50 -> global average pooling -> Linear(2048, 196) -> (N, 98, 2).

    Input: (N, 3, H, W) float, RGB normalised with ``PIXEL_MEAN`` / ``PIXEL_STD`` (see
    ``normalize``); any H, W (the pooling is global), 256 x 256 for the published model.
    Output: (N, 98, 2) landmark positions in crop pixels divided by the crop side (256 for the
    published model; ``model.codec`` decodes them), no activation.
    """

    def __init__(self) -> None:
        super().__init__()
        trunk = resnet50(weights=None)
        for name in _TRUNK:
            setattr(self, name, getattr(trunk, name))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FEATURE_DIM, NUM_LANDMARKS * 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 2048) pooled features."""
        for name in _TRUNK:
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x)).view(-1, NUM_LANDMARKS, 2)


def normalize(crops: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops -> (N, 3, H, W) float32 network input."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must have shape (N, H, W, 3), got {tuple(crops.shape)}")
    x = crops.permute(0, 3, 1, 2).float()
    mean = torch.tensor(PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def imagenet_initialised() -> LandmarkRegressor:
    """A regressor whose trunk starts from torchvision's ResNet50_Weights.IMAGENET1K_V1 (fc dropped).

    Downloads into the torch hub cache on first use (torchvision's own downloader).
    """
    from torchvision.models import ResNet50_Weights

    state = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    model = LandmarkRegressor()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(f"ImageNet weights did not match: missing {missing}, unexpected {unexpected}")
    return model


class CheckpointError(ValueError):
    """A weights file that cannot be loaded into ``LandmarkRegressor``."""


# Known key layouts: (prefix in the file, prefix in LandmarkRegressor). Checked in order.
_KEY_MAP = (
    ("backbone.", ""),                 # mmpose 0.x and 1.x backbone
    ("keypoint_head.fc.", "fc."),      # mmpose 0.x RegressionHead
    ("head.fc.", "fc."),               # mmpose 1.x RegressionHead
)
_IGNORED_PREFIXES = ("data_preprocessor.",)  # mmpose 1.x stores mean/std here; we use constants
_OPTIONAL_SUFFIX = "num_batches_tracked"     # BN counters: unused at inference, absent in some files


def _extract_state_dict(obj, source: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of weights, got {type(obj).__name__}")
    for key in ("state_dict", "model"):  # mmpose files / this project's training checkpoints
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not named tensors: {_names(bad)}")
    return obj


def _normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("module."):  # DistributedDataParallel wrapper
            key = key[len("module."):]
        if key.startswith(_IGNORED_PREFIXES):
            continue
        for old, new in _KEY_MAP:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _names(keys, limit: int = 8) -> str:
    keys = sorted(map(str, keys))
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise one ``CheckpointError`` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {_names(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: not a LandmarkRegressor checkpoint; " + "; ".join(problems))


# The published file keeps mmcv 1.x's runner ``meta``, whose ``hook_msgs.best_score`` is a
# ``numpy.float64``; mmpose 1.x files saved by mmengine keep numpy arrays in ``meta.dataset_meta``
# (flip indices, sigmas, colours). Unpickling them needs numpy's scalar constructor and its array
# reconstruction (``_reconstruct`` with ``ndarray``, filled by ``ndarray.__setstate__``), both named
# ``numpy.core.multiarray`` in files written under numpy 1.x and ``numpy._core.multiarray`` under
# numpy 2, plus ``numpy.dtype`` and the dtype's class (rebuilt through BUILD). These build data and
# run no code; an empty array's data is pickled as ``bytes()``, which is allowed with no argument.
# Only the numeric dtype classes below are allowed: an object or structured dtype,
# an ndarray subclass, or any other global stays refused.
_NUMPY_SCALAR_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                       np.uint64, np.float16, np.float32, np.float64)


def _empty_bytes(*args) -> bytes:
    """``bytes()``: how pickle protocol 2 (torch.save's) writes an empty bytes object, such as the
    raw data of an empty numpy array (mmpose's WFLW ``sigmas`` and ``skeleton_link_colors``).
    Only the empty call is allowed, so that a file cannot ask for ``bytes(10**12)``."""
    if args:
        raise pickle.UnpicklingError(f"bytes{args!r} refused: only bytes() is allowed in a checkpoint")
    return b""


_NUMPY_DTYPE_CLASSES = tuple(type(np.dtype(t)) for t in _NUMPY_SCALAR_TYPES)
_NUMPY_DATA_TYPES = (np.ndarray, *_NUMPY_SCALAR_TYPES)
NUMPY_SAFE_GLOBALS = (
    (_numpy_scalar, "numpy.core.multiarray.scalar"),
    (_numpy_scalar, "numpy._core.multiarray.scalar"),
    (_numpy_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_numpy_reconstruct, "numpy._core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    *_NUMPY_DTYPE_CLASSES,
    (_empty_bytes, "builtins.bytes"),
)
# torch's allow-list is one process-wide set that ``safe_globals`` adds to and removes from on exit;
# loads in several threads (the app) take turns, so that one load's exit cannot empty another's list.
_SAFE_LOAD_LOCK = threading.Lock()
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")
_ALLOWED_NAMES = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in NUMPY_SAFE_GLOBALS}
EXPECTED_CHECKPOINT = "a PyTorch checkpoint (.pth saved by torch.save)"
# First bytes of files that are often given by mistake: (prefix, what the file is).
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x7fELF", "a program (ELF executable)"),
)


def _refused_globals(exc: Exception, path: Path) -> list[str]:
    """Names of the globals the weights-only unpickler refused (from its message, else the file)."""
    names = [a or b for a, b in _REFUSED_GLOBAL.findall(str(exc))]
    if not names:
        try:  # a static read of the pickle's GLOBAL opcodes: nothing is executed
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a readable checkpoint at all (truncated zip, ...)
            names = []
    return sorted(set(names) - _ALLOWED_NAMES)


def describe_non_checkpoint(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is plainly not a torch.save file ("a JPEG image", "empty (0 bytes)",
    "a text file", "a zip archive that holds no data.pkl", ...); ``None`` when it may be one.

    Read from the first bytes (and a zip's member names); nothing is unpickled.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "empty (0 bytes)"
    if head.startswith(b"\x80"):  # a pickle (torch's legacy format starts with one)
        return None
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return None  # a zip cut short (a partial copy): torch.load's error says so
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "a damaged zip archive"
        return None if any(n.endswith("/data.pkl") for n in names) else "a zip archive that holds no data.pkl"
    for prefix, kind in _MAGIC:
        if head.startswith(prefix):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[257:262] == b"ustar":  # torch's oldest format was a tar archive: let torch.load decide
        return None
    if len(head) > 10 and head[8:10] == b'{"':
        return "a safetensors file"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a download that returned a web page?)"
    if _looks_like_text(head):
        return "a text file"
    return f"a file that is neither a zip archive nor a pickle (it starts with bytes {head[:4].hex(' ')})"


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 without NUL or other control bytes besides tab, newline and carriage return."""
    if any(b < 32 and b not in (9, 10, 13) for b in head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 4  # a multi-byte character cut at the end of the window
    return True


def read_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """``torch.load`` with ``weights_only=True``; unreadable or unsafe files raise ``CheckpointError``.

    Beyond torch's own allow-list only numpy's scalar, dtype and ndarray reconstruction
    (``NUMPY_SAFE_GLOBALS``) may run; the error for any other global names it and the file. A file
    that is plainly something else (an image, text, an empty file, another zip) is named as such.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    kind = describe_non_checkpoint(path)
    if kind is not None:
        raise CheckpointError(f"{path} is {kind}, not {EXPECTED_CHECKPOINT}")
    try:
        with _SAFE_LOAD_LOCK:
            present = set(torch.serialization.get_safe_globals())  # others' entries stay after the load
            with torch.serialization.safe_globals([g for g in NUMPY_SAFE_GLOBALS if g not in present]):
                obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle payloads refused by the safe unpickler, ...
        refused = _refused_globals(exc, path)
        if refused:
            raise CheckpointError(
                f"{path}: cannot be read as a weights-only PyTorch checkpoint: it needs "
                f"{', '.join(refused)}, which weights-only loading refuses (only tensors, plain containers "
                f"and numpy numbers and arrays are allowed; such a file could run code when loaded)"
            ) from exc
        raise CheckpointError(f"{path}: cannot be read as {EXPECTED_CHECKPOINT} ({_torch_reason(exc)})") from exc
    _check_numpy_arrays(obj, str(path))
    return obj


def _check_numpy_arrays(obj, source: str) -> None:
    """Refuse numpy data of any type but the numeric ones allowed above (an object array could be
    built from a dtype made without its class, which the allow-list alone would not see)."""
    pending = [("", obj)]
    while pending:  # a loop, not recursion: nesting depth is the file's to choose
        where, value = pending.pop()
        if isinstance(value, np.ndarray | np.generic):
            if type(value.dtype) not in _NUMPY_DTYPE_CLASSES or type(value) not in _NUMPY_DATA_TYPES:
                raise CheckpointError(f"{source}: {where or 'the file'} holds a numpy {type(value).__name__} of "
                                      f"dtype {value.dtype}; only numeric numpy data may be in a checkpoint")
        elif isinstance(value, Mapping):
            pending.extend((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            pending.extend((f"{where}[{i}]", v) for i, v in enumerate(value))


def _torch_reason(exc: Exception) -> str:
    """The cause in torch's error, without its advice to turn the weights-only check off."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else type(exc).__name__


def _config_of(obj, source: str) -> dict:
    """A project checkpoint's ``config`` dict; ``{}`` for files without one (mmpose, plain state dicts)."""
    config = obj.get("config") if isinstance(obj, Mapping) else None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{source}: 'config' must be a dict, got {type(config).__name__}")
    config = dict(config)
    size = config.get("input_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_INPUT_SIZE):
        raise CheckpointError(f"{source}: config.input_size must be a whole number of at least "
                              f"{MIN_INPUT_SIZE} pixels, got {size!r}")
    return config


def read_config(path: str | os.PathLike) -> dict:
    """The training ``config`` stored in a project checkpoint (``{}`` for mmpose and plain files).

    Reads the file with the same weights-only rules as ``load_regressor``; a present
    ``input_size`` is checked to be an int of at least ``MIN_INPUT_SIZE``.
    """
    return _config_of(read_checkpoint(path), str(path))


def load_checkpoint(path_or_url: str | os.PathLike, map_location="cpu") -> tuple[LandmarkRegressor, dict]:
    """The regressor (eval mode) and the checkpoint's training ``config`` (``{}`` when it has none),
    from one read of the file; see ``load_regressor`` for the layouts accepted."""
    source = str(path_or_url)
    if source.startswith(("http://", "https://")):
        from model.weights import download

        path = download(source)
    else:
        path = Path(path_or_url)
    obj = read_checkpoint(path, map_location)
    config = _config_of(obj, str(path))
    state = _normalise_keys(_extract_state_dict(obj, str(path)))
    model = LandmarkRegressor()
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=False)  # strict checks done above; BN counters optional
    return model.eval(), config


def load_regressor(path_or_url: str | os.PathLike, map_location="cpu") -> LandmarkRegressor:
    """Build a ``LandmarkRegressor`` and load weights from a file or URL; returned in eval mode.

    Accepts the official mmpose 0.x file (mmcv's runner ``meta``, numpy scalars included, +
    ``state_dict`` with ``backbone.*`` and ``keypoint_head.fc.*``), mmpose 1.x (``head.fc.*``,
    ``data_preprocessor.*`` ignored), a ``module.`` prefix from DDP and this project's training
    checkpoints (``model`` entry). Nothing is loaded unless every key and shape matches.
    """
    return load_checkpoint(path_or_url, map_location)[0]
