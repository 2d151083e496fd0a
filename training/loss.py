"""SoftWingLoss (Lin et al., "Structure-Coherent Deep Feature Learning for Robust Face Alignment")."""
from __future__ import annotations

import math

import torch
from torch import nn


class SoftWingLoss(nn.Module):
    """Linear for small errors, logarithmic for large ones.

    Per element d = |pred - target|: d when d < omega1, else omega2 * ln(1 + d / epsilon) + B with
    B = omega1 - omega2 * ln(1 + omega1 / epsilon), which makes the two pieces meet at omega1.
    Summed over points and both coordinates, averaged over the batch.
    """

    def __init__(self, omega1: float = 2.0, omega2: float = 20.0, epsilon: float = 0.5) -> None:
        super().__init__()
        if omega1 <= 0 or omega2 <= 0 or epsilon <= 0:
            raise ValueError(f"omega1, omega2 and epsilon must be positive, got {omega1}, {omega2}, {epsilon}")
        self.omega1 = float(omega1)
        self.omega2 = float(omega2)
        self.epsilon = float(epsilon)
        self.B = self.omega1 - self.omega2 * math.log(1.0 + self.omega1 / self.epsilon)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            pred, target: (N, K, 2).
            weight: optional (N, K); multiplies pred and target before the error (0 = ignore).

        Returns:
            scalar loss.
        """
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(f"pred and target must both be (N, K, 2), got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        if weight is not None:
            if weight.shape != pred.shape[:2]:
                raise ValueError(f"weight must be (N, K) = {tuple(pred.shape[:2])}, got {tuple(weight.shape)}")
            pred = pred * weight.unsqueeze(-1)
            target = target * weight.unsqueeze(-1)
        d = (pred - target).abs()
        loss = torch.where(d < self.omega1, d, self.omega2 * torch.log1p(d / self.epsilon) + self.B)
        return loss.sum(dim=(1, 2)).mean()

    def extra_repr(self) -> str:
        return f"omega1={self.omega1}, omega2={self.omega2}, epsilon={self.epsilon}"
