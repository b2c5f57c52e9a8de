"""nnU-Net's deep supervision: its loss weights per decoder scale, and 1x1 heads on the lower scales."""

from __future__ import annotations

import torch
from monai.networks.blocks.dynunet_block import UnetOutBlock
from torch import nn

# nnU-Net halves a scale's loss weight with every halving of the resolution.
SCALE_WEIGHT_DECAY = 0.5


def decoder_scales(n_levels: int) -> int:
    """How many resolutions a U-Net decoder of ``n_levels`` encoder levels outputs.

    Each up-block gives one (the bottleneck gives none), as nnU-Net's localisation blocks do.

    Args:
        n_levels: ``len(network.features)``, at least 2.
    """
    if n_levels < 2:
        raise ValueError(f"a U-Net needs at least 2 levels, got {n_levels}")
    return n_levels - 1


def deep_supervision_weights(n_scales: int) -> list[float]:
    """nnU-Net's deep-supervision loss weights for ``n_scales`` decoder outputs, full resolution first.

    Scale i gets ``SCALE_WEIGHT_DECAY ** i`` (1/2^i), the lowest-resolution scale gets 0 (unless it
    is the only one), and the weights are normalised to sum to 1. nnU-Net v1
    ``nnUNetTrainerV2.initialize``; MAML's ``MAMLTrainerV2.initialize`` uses the same weights.

    Args:
        n_scales: number of decoder outputs (:func:`decoder_scales`), at least 1.

    Returns:
        ``n_scales`` weights, e.g. [2/3, 1/3, 0] for 3 scales.
    """
    if n_scales < 1:
        raise ValueError(f"deep supervision needs at least one scale, got {n_scales}")
    weights = [SCALE_WEIGHT_DECAY ** i for i in range(n_scales)]
    if n_scales > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def supervised_scale_weights(n_levels: int) -> list[float]:
    """The non-zero :func:`deep_supervision_weights` of a U-Net with ``n_levels`` levels.

    nnU-Net computes a head on its lowest-resolution output and gives it weight 0; here that
    head is not built (an untrained parameter would break DistributedDataParallel), so a branch
    outputs exactly one logit map per weight returned here.

    Args:
        n_levels: ``len(network.features)``.

    Returns:
        the weights of scales 0, 1, ... (full resolution first), summing to 1.
    """
    return [w for w in deep_supervision_weights(decoder_scales(n_levels)) if w > 0]


class DeepSupervisionHeads(nn.Module):
    """1x1 heads on a decoder's lower-resolution outputs (nnU-Net's ``seg_outputs``).

    The full-resolution logits come from the decoder's own head; these add the logits of decoder
    scales 1 .. K-1, K = ``len(supervised_scale_weights(len(features)))``.

    Args:
        spatial_dims: 2 or 3.
        features: the network's channels per level, shallowest first (decoder scale i has
            ``features[i]`` channels).
        out_channels: T, the number of targets (one sigmoid logit each).

    Shapes: ``forward([ (B, features[i], *S / 2**i) for decoder scales i = 0, 1, ... ]) ->
    [ (B, T, *S / 2**i) for i = 1 .. K-1 ]`` (scale 0 and unsupervised scales are ignored).
    """

    def __init__(self, spatial_dims: int, features: tuple[int, ...], out_channels: int):
        super().__init__()
        n_supervised = len(supervised_scale_weights(len(features)))
        self.heads = nn.ModuleList(
            UnetOutBlock(spatial_dims, features[i], out_channels) for i in range(1, n_supervised))

    def forward(self, scales: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(scales) <= len(self.heads):
            raise ValueError(f"expected at least {len(self.heads) + 1} decoder scales, got {len(scales)}")
        return [head(x) for head, x in zip(self.heads, scales[1:])]
