import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from model.network import CheckpointError, LandmarkRegressor, load_regressor, normalize


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
    with pytest.raises(CheckpointError, match="evil.pth: cannot be read as a weights-only"):
        load_regressor(path)
    assert not target.exists()
