import math

import pytest
import torch

from training.loss import SoftWingLoss


def test_hand_values():
    loss = SoftWingLoss()
    b = 2.0 - 20.0 * math.log(1 + 2.0 / 0.5)
    pred = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # errors 1 (linear), 3 (log), 0, 0
    target = torch.zeros(1, 2, 2)
    assert loss(pred, target).item() == pytest.approx(1.0 + 20.0 * math.log(1 + 3.0 / 0.5) + b, rel=1e-6)


def test_continuous_at_omega1_and_mean_over_batch():
    loss = SoftWingLoss()
    below = loss(torch.full((1, 1, 2), 2.0 - 1e-6), torch.zeros(1, 1, 2)).item()
    above = loss(torch.full((1, 1, 2), 2.0 + 1e-6), torch.zeros(1, 1, 2)).item()
    assert below == pytest.approx(above, abs=1e-4)
    pred = torch.tensor([[[0.5, 0.5]], [[0.1, 0.1]]])
    assert loss(pred, torch.zeros(2, 1, 2)).item() == pytest.approx((1.0 + 0.2) / 2)


def test_weight_masks_points():
    loss = SoftWingLoss()
    pred = torch.tensor([[[0.3, 0.1], [5.0, 5.0]]])
    weight = torch.tensor([[1.0, 0.0]])
    assert loss(pred, torch.zeros(1, 2, 2), weight).item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="weight must be"):
        loss(pred, torch.zeros(1, 2, 2), torch.ones(2))


def test_gradient_flows():
    pred = torch.zeros(2, 98, 2, requires_grad=True)
    SoftWingLoss()(pred, torch.rand(2, 98, 2)).backward()
    assert pred.grad is not None and torch.all(pred.grad.abs() > 0)
