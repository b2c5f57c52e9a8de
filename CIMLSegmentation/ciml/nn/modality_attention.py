"""MAML's modality-aware attention: per-voxel weights over the modalities, and their weighted sum."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Act, Conv
from torch import nn


def present_mask(present: torch.Tensor | None, batch: int, n_modalities: int,
                 device: torch.device) -> torch.Tensor:
    """(B, M) boolean mask of the modalities to attend to.

    ``None`` means every modality is present. A sample whose mask would be all absent is
    treated as all present: a softmax over no modality is undefined, and a case without any
    image has nothing better to offer than the network's ordinary fusion.
    """
    if present is None:
        return torch.ones(batch, n_modalities, dtype=torch.bool, device=device)
    if present.shape != (batch, n_modalities):
        raise ValueError(f"present must have shape {(batch, n_modalities)}, got {tuple(present.shape)}")
    mask = present.to(device) > 0
    return mask | ~mask.any(dim=1, keepdim=True)


class ModalityAwareAttention(nn.Module):
    """Fuses M modalities' features at one encoder level with per-voxel attention weights.

    The M feature maps are concatenated along the channels, a 1x1 convolution mixes them into
    ``channels`` hidden channels (LeakyReLU), and a second 1x1 convolution gives one score map per
    modality. A softmax over the modality axis turns the scores into weights that sum to 1 at
    every voxel, and the fused features are the weighted sum of the modalities' features. Where a
    modality is absent its features are zeroed before scoring (so it cannot sway the other
    weights) and its score is set to -inf (so its weight is exactly 0).

    Args:
        spatial_dims: 2 or 3.
        channels: C, the channels of each modality's features at this level.
        n_modalities: M.

    Shapes: ``forward([ (B, C, *S) ] * M, present (B, M) or None) -> (fused (B, C, *S),
    weights (B, M, *S) in [0, 1], summing to 1 over M)``.
    """

    def __init__(self, spatial_dims: int, channels: int, n_modalities: int):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.n_modalities = n_modalities
        self.score = nn.Sequential(
            conv(n_modalities * channels, channels, kernel_size=1),
            Act[Act.LEAKYRELU](negative_slope=0.01, inplace=True),
            conv(channels, n_modalities, kernel_size=1))

    def forward(self, features: list[torch.Tensor],
                present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(features) != self.n_modalities:
            raise ValueError(f"expected {self.n_modalities} modalities' features, got {len(features)}")
        stacked = torch.stack(features, dim=1)  # (B, M, C, *S)
        batch, _, channels, *spatial = stacked.shape
        mask = present_mask(present, batch, self.n_modalities, stacked.device)
        shape = (batch, self.n_modalities, *([1] * (stacked.dim() - 2)))
        # Zeroing (not just down-weighting) the absent features makes the fusion independent of
        # whatever an absent channel holds: 0 * finite features is exactly 0.
        stacked = stacked * mask.reshape(shape).to(stacked.dtype)
        scores = self.score(stacked.reshape(batch, self.n_modalities * channels, *spatial))
        scores = scores.masked_fill(~mask.reshape(batch, self.n_modalities, *([1] * len(spatial))),
                                    float("-inf"))
        weights = torch.softmax(scores, dim=1)
        fused = (weights.unsqueeze(2) * stacked).sum(dim=1)
        return fused, weights
