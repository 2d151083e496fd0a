"""Ghost BatchNorm (training.layers): each group of images normalised as a separate BatchNorm batch,
eager and compiled (torch.compile runs on CPU too)."""
from __future__ import annotations

import pytest
import torch

from model.network import LandmarkRegressor
from training.layers import BN_GROUP, GhostBatchNorm2d, use_ghost_batchnorm


def _bn_pair(channels: int, group: int, seed: int = 0, momentum: float | None = 0.1):
    torch.manual_seed(seed)
    plain = torch.nn.BatchNorm2d(channels, momentum=momentum)
    torch.nn.init.uniform_(plain.weight, 0.5, 1.5)
    torch.nn.init.uniform_(plain.bias, -0.5, 0.5)
    ghost = use_ghost_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(channels, momentum=momentum)), group)[0]
    ghost.load_state_dict(plain.state_dict())
    return plain.train(), ghost.train()


def _check_equals_separate_batches(group: int, batch: int, compiled: bool, momentum: float | None = 0.1) -> None:
    plain, ghost = _bn_pair(4, group, momentum=momentum)
    whole, _ = _bn_pair(4, group, momentum=momentum)
    rank0 = torch.nn.BatchNorm2d(4, momentum=momentum).train()
    rank0.load_state_dict(plain.state_dict())
    assert isinstance(ghost, GhostBatchNorm2d) and ghost.group == group
    run = torch.compile(ghost) if compiled else ghost
    x = torch.randn(batch, 4, 3, 3) * 2 + 1
    x[group:] += 3  # groups with different statistics, so that grouping matters
    for _ in range(2):  # two steps: the running statistics build up the same way
        expected = torch.cat([plain(part) for part in x.split(group)])
        rank0(x[:group])
        got = run(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert not torch.allclose(got, whole(x), atol=1e-2)  # one batch of the whole differs
        # the same gradients for the same loss
        weights = torch.linspace(-1, 1, x.numel()).view_as(x)
        grads = [torch.autograd.grad((out * weights).sum(), (m.weight, m.bias))
                 for out, m in ((got, ghost), (expected, plain))]
        for a, b in zip(*grads):
            # float32 sums over 4,608 values differ in their last bits (in float64: by 1e-12)
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
        x = x.flip(0) * 0.5
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(rank0, name), rtol=0, atol=1e-6)
    assert ghost.num_batches_tracked.item() == 2
    # evaluation mode uses the running statistics, as plain BatchNorm does
    torch.testing.assert_close(ghost.eval()(x), rank0.eval()(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("group, batch", [(3, 12), (3, 11), (BN_GROUP, 2 * BN_GROUP)])
def test_ghost_batchnorm_equals_separate_batches(group, batch):
    """Statistics over groups of ``group`` images: outputs and gradients equal a plain BatchNorm fed
    the groups one after the other (the last group may be short, as a last batch is); the running
    statistics equal a plain BatchNorm fed the first group only (rank 0 of 8 processes keeps its own)."""
    _check_equals_separate_batches(group, batch, compiled=False)


def test_ghost_batchnorm_cumulative_average():
    """momentum=None: BatchNorm's cumulative running average, from the first group."""
    _check_equals_separate_batches(3, 9, compiled=False, momentum=None)


def test_ghost_batchnorm_compiled_equals_separate_batches():
    """The same under torch.compile (about 30 s of compiling on a busy 2-core CPU): three full groups
    in one vectorised reduction plus a short last group."""
    _check_equals_separate_batches(3, 11, compiled=True)


def test_ghost_batchnorm_keeps_channels_last():
    _, ghost = _bn_pair(4, 2)
    x = torch.randn(6, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    out = ghost(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ghost(x.contiguous()), rtol=0, atol=1e-6)


def test_ghost_batchnorm_in_the_network_keeps_checkpoints():
    model = use_ghost_batchnorm(LandmarkRegressor(), 2)
    ghosts = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert ghosts and all(isinstance(m, GhostBatchNorm2d) for m in ghosts)
    assert set(model.state_dict()) == set(LandmarkRegressor().state_dict())  # same keys: load_regressor reads it


def test_ghost_batchnorm_refuses_an_empty_group():
    with pytest.raises(ValueError, match="group must be at least 1 image, got 0"):
        GhostBatchNorm2d(4, 0)
