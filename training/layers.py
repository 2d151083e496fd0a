"""Layers the training run swaps into the network: BatchNorm over fixed-size groups of images.

The published run trained on 8 GPUs x 64 images with plain (unsynchronised) BatchNorm, so every
BatchNorm batch was 64 images. ``GhostBatchNorm2d`` reproduces that on any number of GPUs and any
micro-batch: in training mode each group of ``group`` images is normalised on its own statistics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Images per BatchNorm batch in the published runs: 64 on each of 8 GPUs, plain (unsynchronised) BN.
BN_GROUP = 64


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training mode, normalises each group of ``group`` images on its own.

    Every group is normalised exactly as a separate BatchNorm batch: its own mean and (biased)
    variance. All full groups are normalised by one ``F.batch_norm`` call, with the groups laid out
    as extra channels (``_full_groups``); a short last group (a last batch that does not divide) by
    a second one. The running statistics (and ``num_batches_tracked``) are updated from the first
    group only, once per forward, with BatchNorm's rule (unbiased variance, ``momentum`` or the
    cumulative average when it is ``None``): on 8 GPUs each process keeps its
    own running statistics from its own 64 images, and the checkpoint is rank 0's. A 512-image
    batch on one GPU then trains as mmpose's 8 GPUs x 64 images did. Evaluation mode uses the
    running statistics as usual. Parameters and buffers are BatchNorm2d's, so checkpoints are
    unchanged.

    Why ghost BN rather than gradient accumulation over 64-image micro-batches: both give the same
    statistics and gradients, but ghost BN leaves the micro-batch free. A large GPU runs the whole
    step in one forward (accumulation would force eight sequential 64-image passes), and
    ``--max-images-per-step`` stays a pure memory setting.
    """

    def __init__(self, num_features: int, group: int = BN_GROUP, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if group < 1:
            raise ValueError(f"group must be at least 1 image, got {group}")
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.group:
            return super().forward(x)
        full = (x.shape[0] // self.group) * self.group
        out = self._full_groups(x[:full])
        if full == x.shape[0]:
            return out
        rest = F.batch_norm(x[full:], None, None, self.weight, self.bias, True, 0.0, self.eps)
        return torch.cat([out, rest])

    def _full_groups(self, x: torch.Tensor) -> torch.Tensor:
        """(G x group, C, H, W) -> the same shape, each group normalised on its own statistics.

        One ``F.batch_norm`` over a (group, G x C, H, W) rearrangement: channel (g, c) holds group
        g's images of channel c, so its statistics are exactly group g's.
        """
        count, channels = x.shape[0] // self.group, x.shape[1]
        stacked = x.unflatten(0, (count, self.group)).transpose(0, 1).reshape(self.group, count * channels,
                                                                               *x.shape[2:])
        running_mean = running_var = None
        factor = 0.0
        if self.track_running_stats:
            # every group updates its own copy of the running statistics; the first group's are kept
            running_mean, running_var = self.running_mean.repeat(count), self.running_var.repeat(count)
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        weight = self.weight.repeat(count) if self.affine else None
        bias = self.bias.repeat(count) if self.affine else None
        out = F.batch_norm(stacked, running_mean, running_var, weight, bias, True, factor, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(running_mean[:channels])
                self.running_var.copy_(running_var[:channels])
        result = torch.empty_like(x)  # x's memory format (channels-last stays channels-last)
        result.unflatten(0, (count, self.group)).copy_(out.view(self.group, count, *x.shape[1:]).transpose(0, 1))
        return result


def use_ghost_batchnorm(model: nn.Module, group: int) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` of ``model`` for a ``GhostBatchNorm2d`` holding the same
    parameters and statistics (in place; returns ``model``)."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            ghost = GhostBatchNorm2d(child.num_features, group, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            ghost.load_state_dict(child.state_dict())
            ghost.train(child.training)
            setattr(model, name, ghost)
        else:
            use_ghost_batchnorm(child, group)
    return model
