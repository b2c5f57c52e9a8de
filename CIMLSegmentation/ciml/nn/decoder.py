"""One sub-task's decoder: MONAI U-Net up-blocks from the deepest level back to full size."""

from __future__ import annotations

import torch
from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetUpBlock
from torch import nn


class SubTaskDecoder(nn.Module):
    """Decodes a primary modality's (message-enriched) features into its targets' logits.

    Args:
        spatial_dims: 2 or 3.
        features: channels per level, shallowest first (as the encoders').
        out_channels: number of targets of the sub-task (one sigmoid logit each).
        kernel_size: convolution kernel size.
        norm: MONAI normalisation name.
        dropout: dropout rate.
        level_set: add DTC's second head, regressing each target's signed distance (tanh).

    Shapes: ``forward([ (B, features[i], *S / 2**i) ]) -> (logits (B, out_channels, *S),
    level set (B, out_channels, *S) in [-1, 1] or None)``.
    """

    def __init__(self, spatial_dims: int, features: tuple[int, ...], out_channels: int,
                 kernel_size: int = 3, norm: str = "instance", dropout: float = 0.0, level_set: bool = False):
        super().__init__()
        self.up = nn.ModuleList(
            UnetUpBlock(spatial_dims, features[i], features[i - 1], kernel_size=kernel_size, stride=1,
                        upsample_kernel_size=2, norm_name=norm, dropout=dropout or None)
            for i in range(len(features) - 1, 0, -1))
        self.head = UnetOutBlock(spatial_dims, features[0], out_channels)
        self.level_set = UnetOutBlock(spatial_dims, features[0], out_channels) if level_set else None

    def features(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """The full-resolution features before the heads: (B, features[0], *S)."""
        x = skips[-1]
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(x, skip)
        return x

    def scales(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every up-block's output, full resolution first (for deep supervision).

        Adds nothing to the module (no parameters); ``scales(skips)[0]`` is :meth:`features`.

        Args:
            skips: the encoder's features, [ (B, features[i], *S / 2**i) ] shallowest first.

        Returns:
            [ (B, features[i], *S / 2**i) for i = 0 .. len(features) - 2 ].
        """
        x = skips[-1]
        outputs = []
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(x, skip)
            outputs.append(x)
        return outputs[::-1]

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`features`' output -> (logits, level set or None)."""
        return self.head(x), None if self.level_set is None else torch.tanh(self.level_set(x))

    def forward(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.heads(self.features(skips))
