"""One modality's encoder: a stack of MONAI U-Net blocks, one per resolution level."""

from __future__ import annotations

import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock
from torch import nn


class ModalityEncoder(nn.Module):
    """Encodes one single-channel modality into features at every level.

    Args:
        spatial_dims: 2 or 3.
        features: channels per level, shallowest first. Level 0 keeps the input resolution;
            each further level halves it with a strided convolution.
        kernel_size: convolution kernel size.
        norm: MONAI normalisation name.
        dropout: dropout rate.

    Shapes: ``forward((B, 1, *S)) -> [ (B, features[i], *S / 2**i) for each level i ]``.
    """

    def __init__(self, spatial_dims: int, features: tuple[int, ...], kernel_size: int = 3,
                 norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        channels = (1, *features)
        self.levels = nn.ModuleList(
            UnetBasicBlock(spatial_dims, channels[i], channels[i + 1], kernel_size=kernel_size,
                           stride=1 if i == 0 else 2, norm_name=norm, dropout=dropout or None)
            for i in range(len(features)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out
