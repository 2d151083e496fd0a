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
    CheckpointError, load_checkpoint, load_regressor, normalize,
    read_checkpoint, read_config,
)

try:
    from numpy._core.multiarray import _reconstruct as NUMPY_RECONSTRUCT
    from numpy._core.multiarray import scalar as NUMPY_SCALAR
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as NUMPY_RECONSTRUCT
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
    """Writes numpy's scalar constructor and array reconstruction under their numpy 1.x names,
    numpy.core.multiarray.scalar and ._reconstruct, as a numpy 1.x machine did (the 2021 training
    machine, most mmengine checkpoints); numpy 2 writes numpy._core.multiarray.*."""

    def save_global(self, obj, name=None):
        for known, text in ((NUMPY_SCALAR, b"scalar"), (NUMPY_RECONSTRUCT, b"_reconstruct")):
            if obj is known:
                self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + text + b"\n")
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
    assert read_config(path) == {}  # an mmpose file has no config


def test_numpy_data_beyond_numbers_is_refused_by_name(tmp_path, random_regressor):
    """Numeric numpy arrays load; string, object and structured arrays and ndarray subclasses do not,
    and the error names what the file needs."""
    state = {k: v for k, v in random_regressor.state_dict().items() if k.startswith("fc.")}
    for name, value, needed in [
        ("strings", np.array(["left_eye", "nose"]), r"numpy\.dtypes\.StrDType"),
        ("objects", np.array([1, "a"], dtype=object), r"numpy\.dtypes\.ObjectDType"),
        ("records", np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]), r"numpy\.dtypes\.VoidDType"),
        ("masked", np.ma.masked_array([1.0, 2.0], mask=[False, True]), r"numpy\.ma\.core\._mareconstruct"),
    ]:
        path = tmp_path / f"{name}.pth"
        torch.save({"meta": {"dataset_meta": {name: value}}, "state_dict": state}, path)
        with pytest.raises(CheckpointError, match=rf"{name}.pth: cannot be read as a weights-only PyTorch "
                                                  rf"checkpoint: it needs .*{needed}"):
            read_checkpoint(path)


class _ObjectArrayWithoutDtypeClass(pickle.Pickler):
    """Pickles an object array so that its dtype is built by ``numpy.dtype("O8")`` alone (no BUILD
    of numpy.dtypes.ObjectDType): the allow-list never sees the object dtype's class."""

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype) and obj.kind == "O":
            return np.dtype, ("O8", False, True)
        if isinstance(obj, np.ndarray) and obj.dtype.kind == "O":
            return NUMPY_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, obj.shape, obj.dtype, False, list(obj.ravel()))
        return NotImplemented


def test_an_object_array_smuggled_past_the_allow_list_is_refused(tmp_path):
    path = tmp_path / "smuggled.pth"
    module = types.SimpleNamespace(__name__="pickle", Pickler=_ObjectArrayWithoutDtypeClass,
                                   Unpickler=pickle.Unpickler, dump=pickle.dump, load=pickle.load)
    torch.save({"meta": {"dataset_meta": {"ids": np.array(["a", 1], dtype=object)}}}, path, pickle_module=module)
    with zipfile.ZipFile(path) as z:  # the trick is in the file: no ObjectDType global
        raw = b"".join(z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    assert b"_reconstruct" in raw and b"ObjectDType" not in raw
    with pytest.raises(CheckpointError, match=r"smuggled.pth: meta.dataset_meta.ids holds a numpy ndarray of "
                                              r"dtype object; only numeric numpy data may be in a checkpoint"):
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
    assert read_config(path)["input_size"] == 128
    model, config = load_checkpoint(path)
    assert config["input_size"] == 128 and not model.training
    torch.testing.assert_close(_outputs(model), _outputs(random_regressor), rtol=0, atol=0)
    for bad in (8, 128.0, "128", True):
        bad_path = _project_checkpoint(tmp_path / "bad.pth", {}, bad)
        with pytest.raises(CheckpointError, match=rf"bad.pth: config.input_size must be a whole number of at "
                                                  rf"least 16 pixels, got {bad!r}"):
            read_config(bad_path)


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


# ----------------------------------------------------------------------------- mmpose 1.x, saved by mmengine

def save_mmengine_checkpoint(state_dict, path: Path, *, legacy_format: bool = False, numpy1_names: bool = False,
                             dataset_meta_extra=None, meta_extra=None, hub_extra=None) -> dict:
    """Write ``state_dict`` (LandmarkRegressor names) as mmengine's ``Runner.save_checkpoint`` does
    for an mmpose 1.x RegressionHead model.

    ``meta``: epoch and iter (CheckpointHook), the config text, seed, experiment name, time,
    mmengine_version, and ``dataset_meta``, the dataset's parsed metainfo, which keeps numpy arrays
    (flip indices, sigmas, keypoint weights, colours). ``state_dict``: ``backbone.*``, ``head.fc.*``
    and the data preprocessor's mean/std buffers. ``message_hub``: the hub's state (runtime info and
    the keys to resume); ``param_schedulers``: plain dicts. The optimizer is removed, as publishing
    does. mmengine saves with torch's default zip format.
    """
    from model.layout import FLIP_INDICES, NUM_LANDMARKS

    renamed = OrderedDict(
        (("head." if k.startswith("fc.") else "backbone.") + k, v.detach().cpu()) for k, v in state_dict.items())
    renamed["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    renamed["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    dataset_meta = {
        "dataset_name": "wflw", "num_keypoints": NUM_LANDMARKS,
        "keypoint_id2name": {i: f"kpt-{i}" for i in range(NUM_LANDMARKS)},
        "flip_indices": np.asarray(FLIP_INDICES, dtype=np.int64),
        "flip_pairs": [[i, int(j)] for i, j in enumerate(FLIP_INDICES) if i < j],
        "sigmas": np.full(NUM_LANDMARKS, 0.025, dtype=np.float32),
        "dataset_keypoint_weights": np.ones(NUM_LANDMARKS, dtype=np.float32),
        "keypoint_colors": np.full((NUM_LANDMARKS, 3), 255, dtype=np.uint8),
        "skeleton_links": [], "skeleton_link_colors": np.zeros((0, 3), dtype=np.uint8),
        "upper_body_ids": [], "lower_body_ids": [],
        **(dataset_meta_extra or {}),
    }
    meta = {"epoch": 60, "iter": 14040,
            "cfg": "model = dict(type='TopdownPoseEstimator', head=dict(type='RegressionHead', in_channels=2048))",
            "seed": 1721342, "experiment_name": "td-reg_res50_8xb64-210e_wflw-256x256_20240101_120000",
            "time": "20240101_130000", "mmengine_version": "0.10.3", "dataset_meta": dataset_meta,
            **(meta_extra or {})}
    hub = {"log_scalars": OrderedDict(),
           "runtime_info": OrderedDict(epoch=60, iter=14040, max_epochs=60, max_iters=14040,
                                       dataset_meta=dataset_meta, **(hub_extra or {})),
           "resumed_keys": OrderedDict(epoch=True, iter=True, max_epochs=True, max_iters=True)}
    checkpoint = {"meta": meta, "state_dict": renamed, "message_hub": hub,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
                  "param_schedulers": [{"start_factor": 0.001, "by_epoch": False, "begin": 0, "end": 500,
                                        "last_step": 14040, "_get_lr_called_within_step": False}]}
    del checkpoint["optimizer"]
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format,
               pickle_module=NUMPY1_PICKLE if numpy1_names else pickle)
    return checkpoint


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip-format", "legacy-format"])
@pytest.mark.parametrize("numpy1_names", [False, True], ids=["numpy2-pickle", "numpy1-pickle"])
def test_mmengine_checkpoint_with_numpy_arrays_loads(tmp_path, random_regressor, legacy_format, numpy1_names):
    path = tmp_path / "td-reg_res50_softwingloss_8xb64-210e_wflw-256x256-00000000_20240101.pth"
    saved = save_mmengine_checkpoint(random_regressor.state_dict(), path, legacy_format=legacy_format,
                                     numpy1_names=numpy1_names)
    raw = path.read_bytes()
    if not legacy_format:
        with zipfile.ZipFile(path) as z:
            raw = b"".join(z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    module = b"numpy.core.multiarray" if numpy1_names else b"numpy._core.multiarray"
    assert module + b"\n_reconstruct" in raw  # the arrays really need numpy's reconstruction
    with pytest.raises(pickle.UnpicklingError, match="_reconstruct"):
        torch.load(path, weights_only=True)  # which torch alone refuses

    loaded = load_regressor(path)
    torch.testing.assert_close(_outputs(loaded), _outputs(random_regressor), rtol=0, atol=0)
    meta = read_checkpoint(path)["meta"]
    want = saved["meta"]["dataset_meta"]
    for key in ("flip_indices", "sigmas", "dataset_keypoint_weights", "keypoint_colors", "skeleton_link_colors"):
        assert type(meta["dataset_meta"][key]) is np.ndarray and meta["dataset_meta"][key].dtype == want[key].dtype
        np.testing.assert_array_equal(meta["dataset_meta"][key], want[key])
    assert meta["mmengine_version"] == "0.10.3" and read_config(path) == {}


class _Touch:
    """Unpickling this creates ``target`` (the proof that code ran)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip-format", "legacy-format"])
@pytest.mark.parametrize("where", ["meta", "dataset_meta", "nested", "beside-arrays"])
def test_payload_anywhere_in_an_mmengine_file_is_refused_and_never_runs(tmp_path, random_regressor, where,
                                                                        legacy_format):
    target = tmp_path / "must-not-exist"
    pickle.loads(pickle.dumps(_Touch(tmp_path / "proof")))  # the payload is real: plain pickle runs it
    assert (tmp_path / "proof").exists()
    payload = _Touch(target)
    extra = {"meta": {"meta_extra": {"experiment_name": payload}},
             "dataset_meta": {"dataset_meta_extra": {"dataset_name": payload}},
             "nested": {"hub_extra": {"deep": {"a": [1, {"b": (2, payload)}]}}},
             "beside-arrays": {"dataset_meta_extra": {"sigmas": [np.ones(3, np.float32), payload]}}}[where]
    path = tmp_path / "evil-mmengine.pth"
    save_mmengine_checkpoint(random_regressor.state_dict(), path, legacy_format=legacy_format, **extra)
    with pytest.raises(CheckpointError) as err:
        load_regressor(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot be read as a weights-only PyTorch checkpoint: it needs ")
    assert "getattr" in message and "weights_only=False" not in message
    assert not target.exists()


def _jpeg(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(path, "JPEG")


def _zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights/readme.txt", "not a checkpoint")


@pytest.mark.parametrize("make, what", [
    (_jpeg, "is a JPEG image"),
    (lambda p: p.write_text("model weights\nepoch 3\n"), "is a text file"),
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (_zip_of_text, "is a zip archive that holds no data.pkl"),
    (lambda p: p.write_text("<!DOCTYPE html><html><body>Not Found</body></html>"), "is an HTML page"),
    (lambda p: p.write_bytes(bytes(range(1, 9)) * 64), "is a file that is neither a zip archive nor a pickle"),
], ids=["photo", "text", "empty", "zip", "html", "binary"])
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, make, what):
    path = tmp_path / "weights.pth"
    make(path)
    with pytest.raises(CheckpointError) as err:
        load_regressor(path)
    assert str(err.value).startswith(f"{path} {what}")
    assert str(err.value).endswith("not a PyTorch checkpoint (.pth saved by torch.save)")
    assert "weights_only" not in str(err.value)


def test_torch_advice_to_load_unsafely_never_reaches_the_user(tmp_path, random_checkpoint):
    """A real checkpoint cut short, in both formats: torch's own reason, without its weights_only advice."""
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(random_checkpoint, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    for source in (random_checkpoint, legacy):
        cut = tmp_path / f"cut-{source.name}"
        cut.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
        with pytest.raises(CheckpointError) as err:
            load_regressor(cut)
        assert str(err.value).startswith(f"{cut}: cannot be read as a PyTorch checkpoint (.pth saved by torch.save) (")
        assert "weights_only" not in str(err.value)


class _BytesBomb:
    """Unpickles as ``bytes(10**12)``: a terabyte of zeros asked for by the file."""

    def __reduce__(self):
        return (bytes, (10 ** 12,))


def test_bytes_is_allowed_only_empty(tmp_path):
    """Protocol 2 writes an empty array's data as ``bytes()``; any argument is refused by name."""
    path = tmp_path / "bytes-bomb.pth"
    torch.save({"meta": {"sigmas": np.zeros(0, np.float32), "x": _BytesBomb()}}, path)
    with pytest.raises(CheckpointError, match=r"bytes-bomb.pth: cannot be read as a PyTorch checkpoint .*"
                                              r"only bytes\(\) is allowed in a checkpoint"):
        read_checkpoint(path)
    empty = tmp_path / "empty-array.pth"
    torch.save({"meta": {"sigmas": np.zeros(0, np.float32)}}, empty)
    loaded = read_checkpoint(empty)["meta"]["sigmas"]
    assert loaded.shape == (0,) and loaded.dtype == np.float32
