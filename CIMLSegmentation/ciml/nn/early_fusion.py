"""The early-fusion baseline: every modality a channel of one MONAI DynUNet."""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet
from torch import nn

from ciml.config import ModelCard
from ciml.nn.ciml_net import CIMLNet
from ciml.nn.output import NetOutput
from ciml.nn.output_prior import OutputHeads
from ciml.nn.parameters import parameter_count


def _dynunet(card: ModelCard, features: tuple[int, ...]) -> DynUNet:
    net = card.network
    levels = len(features)
    return DynUNet(
        spatial_dims=net.spatial_dims, in_channels=len(card.modalities), out_channels=len(card.targets),
        kernel_size=[net.kernel_size] * levels, strides=[1] + [2] * (levels - 1),
        upsample_kernel_size=[2] * (levels - 1), filters=list(features), norm_name=net.norm,
        dropout=net.dropout or None)


def matched_features(card: ModelCard, target: int) -> tuple[int, ...]:
    """The card's feature widths scaled so that the DynUNet has about ``target`` weights.

    Bisects the width multiplier, building candidates on the meta device (no memory, no time).
    """
    base = card.network.features
    low, high = 0.05, 16.0
    for _ in range(30):
        mid = (low + high) / 2
        with torch.device("meta"):
            n = parameter_count(_dynunet(card, tuple(max(1, round(f * mid)) for f in base)))
        low, high = (mid, high) if n < target else (low, mid)
    return tuple(max(1, round(f * (low + high) / 2)) for f in base)


class EarlyFusionNet(nn.Module):
    """All modalities stacked as input channels of one DynUNet, with CIML's outputs.

    Args:
        card: the model card (modalities, targets and the ``network`` section).
        features: channels per level; by default the card's widths scaled to match the
            parameter count of the CIML network of the same card (see :func:`matched_features`).

    Shapes: ``forward((B, M, *S)) -> (B, T, *S)`` logits.
    """

    def __init__(self, card: ModelCard, features: tuple[int, ...] | None = None):
        super().__init__()
        if features is None:
            with torch.device("meta"):
                features = matched_features(card, parameter_count(CIMLNet(card)))
        self.card = card
        self.features = tuple(features)
        self.net = _dynunet(card, self.features)

    @property
    def options(self) -> dict:
        """What a bundle records to rebuild exactly this network."""
        return {"features": list(self.features)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def output_heads(self) -> OutputHeads:
        """DynUNet's output convolution, every target (:mod:`ciml.nn.output_prior`)."""
        return [(self.net.output_block.conv.conv, list(range(len(self.card.targets))))]

    def forward_features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> NetOutput:
        """The logits and the last decoder features (the input of DynUNet's output block).

        Args:
            x: (B, M, *S) the modalities as channels.
            present: (B, M); unused: an absent modality is a zero channel, and early fusion
                has no other way to know.

        Returns:
            A :class:`NetOutput` with ``logits`` (B, T, *S) and, for every sub-task, the same
            (B, features[0], *S) ``decoder_features``.
        """
        # DynUNet.forward is skip_layers then output_block (plus deep-supervision heads, never
        # enabled here); calling the two halves gives the same logits and the features between
        # them, without a forward hook (state left on the module, invisible where this is read).
        features = self.net.skip_layers(x)
        logits = self.net.output_block(features)
        return NetOutput(logits=logits, kl=logits.new_zeros(()),
                         decoder_features={s.name: features for s in self.card.subtasks})
