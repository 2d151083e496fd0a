import pickle
import threading
import time
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from model.network import (
    CheckpointError, checkpoint_input_size, load_checkpoint, load_regressor, normalize,
    read_checkpoint, read_config,
)

try:
    from numpy._core.multiarray import scalar as NUMPY_SCALAR
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as NUMPY_SCALAR


def _outputs(model, seed=1):
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return model.eval()(x)


def test_output_shape_and_parameter_names(random_regressor):
    out = _outputs(random_regressor)
    assert out.shape == (2, 98, 2)
    names = set(random_regressor.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer4.2.conv3.weight", "fc.weight", "fc.bias"} <= names
    assert random_regressor.fc.weight.shape == (196, 2048)


def test_parameter_names_match_torchvision_resnet50(random_regressor):
    from torchvision.models import resnet50

    reference = resnet50(weights=None, num_classes=196).state_dict()
    ours = random_regressor.state_dict()
    assert list(reference) == list(ours)
    assert all(reference[k].shape == ours[k].shape for k in reference)


def test_normalize_uses_mmpose_statistics():
    crops = torch.full((1, 4, 4, 3), 0, dtype=torch.uint8)
    crops[..., 0] = 124  # ~mean of R
    x = normalize(crops)
    assert x.shape == (1, 3, 4, 4)
    assert x[0, 0, 0, 0].item() == pytest.approx((124 - 123.675) / 58.395, rel=1e-5)  # float32
    assert x[0, 2, 0, 0].item() == pytest.approx(-103.53 / 57.375, rel=1e-6)


def _layouts(state):
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    fc = {k[len("fc."):]: v for k, v in state.items() if k.startswith("fc.")}
    return {
        "plain": state,
        "mmpose0": {"meta": {"mmpose_version": "0.21.0", "epoch": 210},
                    "state_dict": {**{f"backbone.{k}": v for k, v in trunk.items()},
                                   **{f"keypoint_head.fc.{k}": v for k, v in fc.items()}}},
        "mmpose1": {"meta": {"dataset_meta": {"dataset_name": "wflw"}},
                    "state_dict": {"data_preprocessor.mean": torch.zeros(1, 3, 1, 1),
                                   "data_preprocessor.std": torch.ones(1, 3, 1, 1),
                                   **{f"backbone.{k}": v for k, v in trunk.items()},
                                   **{f"head.fc.{k}": v for k, v in fc.items()}}},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "training": {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3,
                     "config": {"lr": 5e-4, "epochs": 210}},
        "no_bn_counters": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }


@pytest.mark.parametrize("layout", ["plain", "mmpose0", "mmpose1", "ddp", "training", "no_bn_counters"])
def test_every_layout_loads_and_reproduces_outputs(tmp_path, random_regressor, layout):
    path = tmp_path / f"{layout}.pth"
    torch.save(_layouts(random_regressor.state_dict())[layout], path)
    loaded = load_regressor(path)
    assert not loaded.training
    torch.testing.assert_close(_outputs(loaded), _outputs(random_regressor), rtol=0, atol=0)


def test_broken_keys_are_all_named_and_nothing_loads(tmp_path, random_regressor):
    state = dict(random_regressor.state_dict())
    del state["layer4.2.conv3.weight"]
    state["fc.weight"] = torch.zeros(10, 2048)
    state["extra.thing"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_regressor(path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: layer4.2.conv3.weight" in message
    assert "unexpected keys: extra.thing" in message
    assert "fc.weight (10, 2048) (expected (196, 2048))" in message


def test_truncated_file(tmp_path, random_checkpoint):
    data = random_checkpoint.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth: cannot be read"):
        load_regressor(path)


def test_not_a_dict_and_missing_file(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="expected a dict of weights, got Tensor"):
        load_regressor(path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_regressor(tmp_path / "nope.pth")


class _Payload:
    """Unpickling this calls Path.touch(target): code execution from a weights file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_pickle_payload_is_refused_and_does_not_run(tmp_path):
    proof, target = tmp_path / "proof-it-runs", tmp_path / "must-not-exist"
    # the payload is real: unrestricted unpickling runs it
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.bias": torch.zeros(196)}, "x": _Payload(target)}, path)
    with zipfile.ZipFile(path) as z:  # the file carries a pickle that names Path.touch
        assert any(b"touch" in z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    with pytest.raises(CheckpointError, match="evil.pth: cannot be read as a weights-only PyTorch checkpoint: "
                                              "it needs .*getattr"):  # the refused global, by name
        load_regressor(path)
    assert not target.exists()


# ----------------------------------------------------------------------------- the published file


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy's scalar constructor under its numpy 1.x name, numpy.core.multiarray.scalar,
    as the 2021 training machine (numpy 1.x) did; numpy 2 writes numpy._core.multiarray.scalar."""

    def save_global(self, obj, name=None):
        if obj is NUMPY_SCALAR:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


NUMPY1_PICKLE = types.SimpleNamespace(__name__="pickle", Pickler=_Numpy1Pickler, Unpickler=pickle.Unpickler,
                                      dump=pickle.dump, load=pickle.load)


def save_published_checkpoint(state_dict, path: Path, *, best_score=np.float64(0.04436), meta_extra=None,
                              legacy_format: bool = True, numpy1_names: bool = True) -> dict:
    """Write ``state_dict`` (LandmarkRegressor names) as mmcv 1.x + mmpose 0.x's publish_model did.

    mmcv's ``EpochBasedRunner.save_checkpoint``: ``meta`` = the runner's meta (env_info, config text,
    seed, exp_name; ``hook_msgs`` from CheckpointHook and EvalHook, ``best_score`` the NME as the
    metric returns it, a numpy.float64) + epoch and iter; ``mmcv.runner.save_checkpoint`` adds
    mmcv_version and time, and stores ``state_dict`` as an OrderedDict (``weights_to_cpu`` keeps its
    ``_metadata``) beside ``optimizer``. mmpose's ``tools/publish_model.py`` deletes ``optimizer``
    and saves the rest, in the legacy (non-zip) format on torch >= 1.6. Returns the checkpoint dict.
    """
    renamed = OrderedDict()
    for key, value in state_dict.items():
        renamed[("keypoint_head." if key.startswith("fc.") else "backbone.") + key] = value.detach().cpu()
    renamed._metadata = OrderedDict(  # module versions, as nn.Module.state_dict records them
        (("keypoint_head." if k.startswith("fc") else "backbone." if k else "") + k, dict(v))
        for k, v in getattr(state_dict, "_metadata", {}).items())
    meta = {
        "env_info": "sys.platform: linux\nPython: 3.7.10\nCUDA available: True\nPyTorch: 1.9.0\nMMCV: 1.3.9",
        "config": "model = dict(type='TopDown', backbone=dict(type='ResNet', depth=50), "
                  "keypoint_head=dict(type='DeepposeRegressionHead', loss_keypoint=dict(type='SoftWingLoss')))",
        "seed": 0, "exp_name": "res50_wflw_256x256_softwingloss.py",
        "hook_msgs": {"last_ckpt": "work_dirs/res50_wflw/epoch_210.pth",
                      "best_ckpt": "work_dirs/res50_wflw/best_NME_epoch_206.pth", "best_score": best_score},
        **(meta_extra or {}),
    }
    meta.update(epoch=206, iter=206 * 147)           # the runner's save_checkpoint
    meta.update(mmcv_version="1.3.9", time=time.asctime(time.gmtime(0)))  # mmcv.runner.save_checkpoint
    checkpoint = {"meta": meta, "state_dict": renamed,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 5e-7, "params": [0, 1]}]}}
    del checkpoint["optimizer"]                      # publish_model: "remove optimizer for smaller file size"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format,
               pickle_module=NUMPY1_PICKLE if numpy1_names else pickle)
    return checkpoint


@pytest.mark.parametrize("legacy_format", [True, False], ids=["legacy-format", "zip-format"])
@pytest.mark.parametrize("numpy1_names", [True, False], ids=["numpy1-pickle", "numpy2-pickle"])
def test_published_file_with_mmcv_meta_loads_and_reproduces_outputs(tmp_path, random_regressor, legacy_format,
                                                                    numpy1_names):
    path = tmp_path / "deeppose_res50_wflw_256x256_softwingloss-00000000_20211212.pth"
    save_published_checkpoint(random_regressor.state_dict(), path, legacy_format=legacy_format,
                              numpy1_names=numpy1_names)
    scalar_name = b"numpy.core.multiarray\nscalar" if numpy1_names else b"numpy._core.multiarray\nscalar"
    raw = path.read_bytes()
    if not legacy_format:
        with zipfile.ZipFile(path) as z:
            raw = b"".join(z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    assert scalar_name in raw  # the file really carries the numpy global the plain loader refuses
    with pytest.raises(pickle.UnpicklingError, match="scalar"):
        torch.load(path, weights_only=True)

    loaded = load_regressor(path)
    torch.testing.assert_close(_outputs(loaded), _outputs(random_regressor), rtol=0, atol=0)
    meta = read_checkpoint(path)["meta"]
    assert type(meta["hook_msgs"]["best_score"]) is np.float64 and meta["hook_msgs"]["best_score"] == 0.04436
    assert "optimizer" not in read_checkpoint(path) and meta["epoch"] == 206
    assert read_config(path) == {} and checkpoint_input_size(path) is None  # an mmpose file has no config


def test_numpy_array_in_meta_is_refused_by_name(tmp_path, random_regressor):
    """Only numpy scalars are allowed: an array needs numpy's array reconstruction, which stays refused."""
    state = {k: v for k, v in random_regressor.state_dict().items() if k.startswith("fc.")}
    path = tmp_path / "array-meta.pth"
    torch.save({"meta": {"sigmas": np.ones(3)}, "state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"array-meta.pth: cannot be read as a weights-only PyTorch "
                                              r"checkpoint: it needs numpy\._core\.multiarray\._reconstruct"):
        read_checkpoint(path)


def test_payload_in_the_published_meta_is_refused_and_never_runs(tmp_path, random_regressor):
    """Hidden among mmcv's numpy scalars, where the numpy allow-list is active."""
    target = tmp_path / "must-not-exist"
    path = tmp_path / "evil-published.pth"
    save_published_checkpoint(random_regressor.state_dict(), path, meta_extra={"exp_name": _Payload(target)})
    with pytest.raises(CheckpointError) as err:
        load_regressor(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot be read as a weights-only PyTorch checkpoint: it needs ")
    assert "getattr" in message
    assert not target.exists()


def _project_checkpoint(path: Path, state, input_size) -> Path:
    torch.save({"model": state, "epoch": 1, "config": {"input_size": input_size, "lr": 5e-4}}, path)
    return path


def test_project_checkpoint_config_and_input_size(tmp_path, random_regressor):
    path = _project_checkpoint(tmp_path / "p128.pth", random_regressor.state_dict(), 128)
    assert read_config(path) == {"input_size": 128, "lr": 5e-4}
    assert checkpoint_input_size(path) == 128
    model, config = load_checkpoint(path)
    assert config["input_size"] == 128 and not model.training
    torch.testing.assert_close(_outputs(model), _outputs(random_regressor), rtol=0, atol=0)
    for bad in (8, 128.0, "128", True):
        bad_path = _project_checkpoint(tmp_path / "bad.pth", {}, bad)
        with pytest.raises(CheckpointError, match=rf"bad.pth: config.input_size must be a whole number of at "
                                                  rf"least 16 pixels, got {bad!r}"):
            checkpoint_input_size(bad_path)


def test_loads_in_several_threads_keep_the_numpy_allow_list(tmp_path):
    """torch's allow-list is process-wide: one load leaving its ``safe_globals`` block must not take the
    numpy entries away from another thread's load in progress (the app loads from worker threads)."""
    path = tmp_path / "small-published.pth"
    torch.save({"meta": {"hook_msgs": {"best_score": np.float64(0.5)}}, "state_dict": {"x": torch.zeros(4)}},
               path, pickle_module=NUMPY1_PICKLE)
    errors = []

    def load_many():
        for _ in range(30):
            try:
                assert read_checkpoint(path)["meta"]["hook_msgs"]["best_score"] == 0.5
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=load_many) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not any("numpy" in str(g) for g in torch.serialization.get_safe_globals())  # nothing left behind
