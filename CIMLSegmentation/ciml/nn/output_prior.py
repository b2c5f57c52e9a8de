"""Start every sigmoid output at its target's foreground rate (the "prior probability" bias).

With PyTorch's default bias a head starts at p = 0.5 everywhere. For a target that fills 0.1 %
of a patch, BCE's first gradients then all say "lower every voxel", and the optimiser spends its
first steps driving the whole decoder towards predicting nothing; a decoder that has only such
small targets (BraTS's core: TC and ET) can sit there, sigmoid saturated, for a thousand steps
(docs/training.md, "Small targets"). Setting the bias to logit(rate) starts each output where
BCE's push on the bias is zero, so the first gradients are about where the target is. This is
RetinaNet's prior-probability initialisation (Lin et al., 2017, section 4.1); here the rate is
measured on the run's own training crops rather than fixed at 0.01.
"""

from __future__ import annotations

import torch
from torch import nn

# Crops the rates are measured on: the run's first training crops, enough to see a target that
# a crop holds only sometimes; drawing them costs a crop each from the cached cases.
RATE_CROPS = 16

# Rates are clamped into [RATE_FLOOR, 0.5]: a target absent from every sampled crop still gets a
# finite bias, and a target filling most of a crop keeps the default (0: p = 0.5).
RATE_FLOOR = 1e-4

OutputHeads = list[tuple[nn.Conv1d | nn.Conv2d | nn.Conv3d, list[int]]]
"""(1x1 convolution, the card's target indices of its output channels) for every sigmoid head."""


def foreground_rates(regions: torch.Tensor) -> torch.Tensor:
    """Each target's share of voxels over a set of crops.

    Args:
        regions: (N, T, *S) binary target regions of N crops.

    Returns:
        (T,) rates in [0, 1].
    """
    return regions.float().transpose(0, 1).flatten(1).mean(dim=1)


def set_output_prior(heads: OutputHeads, rates: torch.Tensor) -> None:
    """Set each head's bias to logit(rate of its target), the rates clamped (see RATE_FLOOR).

    Args:
        heads: the network's ``output_heads()``.
        rates: (T,) foreground rates in the card's target order (:func:`foreground_rates`).
    """
    logits = torch.logit(rates.double().clamp(RATE_FLOOR, 0.5))
    with torch.no_grad():
        for conv, targets in heads:
            if conv.bias is None:
                raise ValueError(f"{conv} has no bias to set")
            conv.bias.copy_(logits[targets].to(conv.bias))

