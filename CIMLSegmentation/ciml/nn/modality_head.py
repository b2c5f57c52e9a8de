"""A light head predicting every target from one modality's encoder features alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn


class ModalityHead(nn.Module):
    """Unimodal prediction for PASSION's self-distillation (and for inspecting a modality).

    A 1x1 convolution per encoder level, each upsampled to full size and summed (a multi-scale
    "hypercolumn" head). Not a full decoder: it only has to say what one modality knows, at a
    small fraction of a decoder's weights.

    Args:
        spatial_dims: 2 or 3.
        features: the encoder's channels per level, shallowest first.
        out_channels: number of targets.

    Shapes: ``forward([ (B, features[i], *S / 2**i) ]) -> (B, out_channels, *S)``.
    """

    def __init__(self, spatial_dims: int, features: tuple[int, ...], out_channels: int):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.levels = nn.ModuleList(conv(f, out_channels, kernel_size=1) for f in features)
        self.mode = "trilinear" if spatial_dims == 3 else "bilinear"

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        out = self.levels[0](features[0])
        for head, f in zip(self.levels[1:], features[1:]):
            out = out + F.interpolate(head(f), size=size, mode=self.mode, align_corners=False)
        return out
