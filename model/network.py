"""The DeepPose-style regressor: torchvision ResNet-50 trunk, global pooling, one Linear to 98 x 2.

``LandmarkRegressor`` maps a normalised image batch to landmark positions and knows nothing of
boxes, flips or losses. ``load_regressor`` is the one place that reads weights from disk.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50

from model.constants import PIXEL_MEAN, PIXEL_STD
from model.layout import NUM_LANDMARKS

FEATURE_DIM = 2048  # ResNet-50's final channel count

# Parameter names kept identical to torchvision's resnet50 so that ImageNet weights load as they
# are and mmpose's "backbone.<name>" keys map by dropping the prefix.
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class LandmarkRegressor(nn.Module):
    """ResNet-50 -> global average pooling -> Linear(2048, 196) -> (N, 98, 2).

    Input: (N, 3, H, W) float, RGB normalised with ``PIXEL_MEAN`` / ``PIXEL_STD`` (see
    ``normalize``); any H, W (the pooling is global), 256 x 256 for the published model.
    Output: (N, 98, 2) landmark positions in crop pixels divided by 256, no activation.
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


def read_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """``torch.load`` with ``weights_only=True``; unreadable or unsafe files raise ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle payloads refused by the safe unpickler, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only PyTorch checkpoint ({reason})") from exc


def load_regressor(path_or_url: str | os.PathLike, map_location="cpu") -> LandmarkRegressor:
    """Build a ``LandmarkRegressor`` and load weights from a file or URL; returned in eval mode.

    Accepts the official mmpose 0.x file (``meta`` + ``state_dict`` with ``backbone.*`` and
    ``keypoint_head.fc.*``), mmpose 1.x (``head.fc.*``, ``data_preprocessor.*`` ignored), a
    ``module.`` prefix from DDP and this project's training checkpoints (``model`` entry).
    Nothing is loaded unless every key and shape matches.
    """
    source = str(path_or_url)
    if source.startswith(("http://", "https://")):
        from model.weights import download

        path = download(source)
    else:
        path = Path(path_or_url)
    state = _normalise_keys(_extract_state_dict(read_checkpoint(path, map_location), str(path)))
    model = LandmarkRegressor()
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=False)  # strict checks done above; BN counters optional
    return model.eval()
