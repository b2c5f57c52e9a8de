"""MAML's modality-aware attention: fuses the modality-specific networks' full-resolution features."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

# nnU-Net's LeakyReLU slope, which the authors' attention blocks use.
LEAKY_RELU_SLOPE = 0.01
# The authors' fusion and attention convolutions are 3x3(x3) (generic_MAML.py, conv_kwargs).
ATTENTION_KERNEL_SIZE = 3


def present_mask(present: torch.Tensor | None, batch: int, n_modalities: int,
                 device: torch.device) -> torch.Tensor:
    """(B, M) boolean mask of the modalities to fuse.

    A sample whose mask would be all absent is treated as all present: a case without any image
    has nothing better to offer than the network's ordinary fusion.

    Args:
        present: (B, M), > 0 where a case has the modality; ``None`` means all present.
        batch: B.
        n_modalities: M.
        device: where the mask lives.
    """
    if present is None:
        return torch.ones(batch, n_modalities, dtype=torch.bool, device=device)
    if present.shape != (batch, n_modalities):
        raise ValueError(f"present must have shape {(batch, n_modalities)}, got {tuple(present.shape)}")
    mask = present.to(device) > 0
    return mask | ~mask.any(dim=1, keepdim=True)


class ModalityAwareAttention(nn.Module):
    """Fuses M modality-specific networks' last decoder features with modality-aware attention.

    As the authors' ``Generic_MAML.forward``:

    1. initial fusion: ``F_0 = conv3x3(concat(F_1 .. F_M))`` (M*C -> C channels);
    2. per modality i, an attention map ``A_i = sigmoid(conv3x3(LeakyReLU(norm(conv3x3(
       concat(F_i, F_0))))))`` with C channels: one weight per modality, channel and voxel,
       each in (0, 1) and independent of the other modalities' weights (no softmax);
    3. fused features ``F = sum_i A_i * F_i`` (a sum, not a mean).

    An absent modality is left out: its features are zeroed before the initial fusion (so
    whatever its input holds cannot reach ``F_0``) and its attention map is set to 0 (so it adds
    nothing to the sum). The authors' code has no missing-modality case; leaving the branch out
    is this project's reading of it.

    Args:
        spatial_dims: 2 or 3.
        channels: C, the channels of each modality's features (``network.features[0]``).
        n_modalities: M.
        norm: MONAI normalisation name of the attention blocks (the authors' instance norm).

    Shapes: ``forward([ (B, C, *S) ] * M, present (B, M) or None) -> (fused (B, C, *S),
    weights (B, M, C, *S) in (0, 1), exactly 0 for absent modalities)``.
    """

    def __init__(self, spatial_dims: int, channels: int, n_modalities: int, norm: str = "instance"):
        super().__init__()
        self.n_modalities = n_modalities
        # MONAI's Convolution is conv -> norm -> act in one block; the second convolution has
        # neither (its output goes straight into the sigmoid), so it is a bare conv_only block.
        # The first has no bias (the authors' has one): the norm right after removes it, as in
        # MONAI's UnetBasicBlock.
        self.initial = Convolution(spatial_dims, n_modalities * channels, channels,
                                   kernel_size=ATTENTION_KERNEL_SIZE, conv_only=True)
        act = ("leakyrelu", {"negative_slope": LEAKY_RELU_SLOPE, "inplace": True})
        self.attention = nn.ModuleList(
            nn.Sequential(
                Convolution(spatial_dims, 2 * channels, channels, kernel_size=ATTENTION_KERNEL_SIZE,
                            norm=norm, act=act, adn_ordering="NA", bias=False),
                Convolution(spatial_dims, channels, channels, kernel_size=ATTENTION_KERNEL_SIZE,
                            conv_only=True),
                nn.Sigmoid())
            for _ in range(n_modalities))

    def forward(self, features: list[torch.Tensor],
                present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(features) != self.n_modalities:
            raise ValueError(f"expected {self.n_modalities} modalities' features, got {len(features)}")
        stacked = torch.stack(features, dim=1)  # (B, M, C, *S)
        batch = stacked.shape[0]
        mask = present_mask(present, batch, self.n_modalities, stacked.device)
        mask = mask.reshape(batch, self.n_modalities, *([1] * (stacked.dim() - 2))).to(stacked.dtype)
        # Zeroing (not just down-weighting) makes the fusion independent of an absent branch:
        # 0 * finite features is exactly 0.
        stacked = stacked * mask
        initial = self.initial(stacked.flatten(1, 2))
        weights = torch.stack([block(torch.cat([stacked[:, i], initial], dim=1))
                               for i, block in enumerate(self.attention)], dim=1) * mask
        return (weights * stacked).sum(dim=1), weights
