"""MAML: modality-specific networks fused by modality-aware attention (Zhang et al., MICCAI 2021)."""

from __future__ import annotations

import torch
from torch import nn

from ciml.config import ModelCard
from ciml.nn.decoder import SubTaskDecoder
from ciml.nn.encoder import ModalityEncoder
from ciml.nn.modality_attention import ModalityAwareAttention
from ciml.nn.output import NetOutput


class MAMLNet(nn.Module):
    """Modality-aware mutual learning (MAML), the project's interpretation, as a baseline to CIML.

    One modality-specific network per modality of the card: a :class:`ModalityEncoder` and a
    :class:`SubTaskDecoder` that predicts every target from that modality alone (its logits are
    ``NetOutput.branch_logits[modality]``, deep-supervised by :class:`ciml.losses.CIMLLoss` with
    ``card.training.deep_supervision_weight``). At every encoder level a
    :class:`ModalityAwareAttention` weights the modalities' features voxel by voxel (softmax over
    the modalities) and sums them; a fusion :class:`SubTaskDecoder` decodes the fused features
    of all levels into the network's logits.

    MAML does no task decomposition: the card's sub-tasks (primaries, auxiliaries) are not used,
    every modality of the card gets a branch, and every branch and the fusion predict all
    targets. ``network.gate_*`` and ``network.modality_heads`` do not apply (the branches are
    MAML's unimodal outputs already); ``network.level_set_head`` gives the fusion decoder DTC's
    level-set head. The paper's mutual-learning term between branches is a loss, not a part of
    the network: ``branch_logits`` gives a loss all it needs.

    Args:
        card: the model card; its modalities, targets and ``network`` section (spatial_dims,
            features, kernel_size, norm, dropout, level_set_head) fix every size.

    Shapes: ``forward((B, M, *S)) -> (B, T, *S)`` logits, M modalities and T targets in the
    card's order, S divisible by ``2 ** (len(features) - 1)``. ``forward_features(x, present)``
    returns a :class:`NetOutput` whose ``branch_logits`` hold (B, T, *S) per modality,
    ``encoder_features`` each modality's deepest features and ``fused_features`` (per sub-task
    name, the same tensor) the deepest fused features; ``present`` (B, M) is 0 where a case lacks
    a modality: it then gets zero attention weight (its branch is still computed).
    ``forward_attention`` gives the attention weights, [ (B, M, *S / 2**i) ] per level i.
    """

    def __init__(self, card: ModelCard):
        super().__init__()
        self.card = card
        net = card.network
        n_targets = len(card.targets)
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(net.spatial_dims, net.features, net.kernel_size, net.norm, net.dropout)
            for m in card.modality_names})
        self.decoders = nn.ModuleDict({
            m: SubTaskDecoder(net.spatial_dims, net.features, n_targets, net.kernel_size, net.norm, net.dropout)
            for m in card.modality_names})
        self.attention = nn.ModuleList(
            ModalityAwareAttention(net.spatial_dims, f, len(card.modalities)) for f in net.features)
        self.fusion = SubTaskDecoder(net.spatial_dims, net.features, n_targets, net.kernel_size, net.norm,
                                     net.dropout, level_set=net.level_set_head)

    @property
    def options(self) -> dict:
        """What a bundle records besides the card to rebuild this network: nothing."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits

    def encode(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Features of every modality at every level. x: (B, M, *S)."""
        if x.shape[1] != len(self.card.modalities):
            raise ValueError(f"expected {len(self.card.modalities)} modality channels "
                             f"({', '.join(self.card.modality_names)}), got {x.shape[1]}")
        return {m: self.encoders[m](x[:, i:i + 1]) for i, m in enumerate(self.card.modality_names)}

    def attend(self, features: dict[str, list[torch.Tensor]],
               present: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fused features and attention weights at every level, shallowest first."""
        fused, weights = [], []
        for level, attention in enumerate(self.attention):
            f, w = attention([features[m][level] for m in self.card.modality_names], present)
            fused.append(f)
            weights.append(w)
        return fused, weights

    def forward_attention(self, x: torch.Tensor, present: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The attention weights only (no decoder runs): [ (B, M, *S / 2**i) ] per level i."""
        return self.attend(self.encode(x), present)[1]

    def forward_features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> NetOutput:
        features = self.encode(x)
        fused, _ = self.attend(features, present)
        logits, level_set = self.fusion(fused)
        # Every branch runs even for an absent modality: its deep supervision is the loss's
        # business (PASSION may drop it), and the shapes stay the same for every batch.
        branches = {m: self.decoders[m](f)[0] for m, f in features.items()}
        return NetOutput(
            logits=logits, kl=logits.new_zeros(()),
            encoder_features={m: f[-1] for m, f in features.items()},
            fused_features={s.name: fused[-1] for s in self.card.subtasks},
            branch_logits=branches, level_set=level_set)
