"""MAML: modality-specific networks fused by modality-aware attention (Zhang et al., MICCAI 2021)."""

from __future__ import annotations

import torch
from monai.networks.blocks.dynunet_block import UnetOutBlock
from torch import nn

from ciml.config import ModelCard
from ciml.nn.decoder import SubTaskDecoder
from ciml.nn.deep_supervision import DeepSupervisionHeads
from ciml.nn.encoder import ModalityEncoder
from ciml.nn.modality_attention import ModalityAwareAttention
from ciml.nn.output import NetOutput
from ciml.nn.output_prior import OutputHeads


class MAMLNet(nn.Module):
    """Modality-aware mutual learning (MAML), built as the authors' ``Generic_MAML``, a baseline to CIML.

    - **Modality-specific networks**: one U-Net per modality of the card (a
      :class:`ModalityEncoder` and a :class:`SubTaskDecoder`), each predicting every target from
      that modality alone. Their logits at every deep-supervised decoder scale are
      ``NetOutput.branch_scales[modality]`` (full resolution: ``branch_logits[modality]``);
      :class:`ciml.losses.CIMLLoss` supervises each with nnU-Net's multi-scale weights (the
      paper's mutual learning: every branch learns from the labels next to the fusion).
    - **Fusion, once**: a :class:`ModalityAwareAttention` fuses the branches' last
      full-resolution decoder features (per modality and channel sigmoid attention), and a 1x1
      convolution turns the fused features into the network's logits. Nothing is fused at the
      encoder levels: the branches never see each other.
    - **Missing modality**: ``present`` (B, M) leaves an absent modality's branch out of the
      fusion, per sample (its branch still runs; the loss supervises it only where present).

    MAML does no task decomposition: the card's sub-tasks are not used, every modality gets a
    branch, and every branch and the fusion predict all targets (one sigmoid channel each; the
    authors use a softmax over nnU-Net's classes). ``network.gate_*`` and
    ``network.modality_heads`` do not apply; ``network.level_set_head`` adds DTC's level-set
    head (a 1x1 convolution, tanh) on the fused features.

    Args:
        card: the model card; its modalities, targets and ``network`` section (spatial_dims,
            features, kernel_size, norm, dropout, level_set_head) fix every size.

    Shapes: ``forward((B, M, *S)) -> (B, T, *S)`` fused logits, M modalities and T targets in the
    card's order, S divisible by ``2 ** (len(features) - 1)``. ``forward_features(x, present)``
    returns a :class:`NetOutput` with ``branch_logits`` (B, T, *S) and ``branch_scales``
    [ (B, T, *S / 2**i) ] per modality; ``encoder_features`` each branch's features before the
    fusion (B, features[0], *S); ``fused_features`` and ``decoder_features`` (per sub-task name,
    the same tensor) the fused features before the output convolution (B, features[0], *S).
    ``forward_attention(x, present)`` gives the attention weights (B, M, features[0], *S).
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
        self.scale_heads = nn.ModuleDict({
            m: DeepSupervisionHeads(net.spatial_dims, net.features, n_targets) for m in card.modality_names})
        self.attention = ModalityAwareAttention(net.spatial_dims, net.features[0], len(card.modalities), net.norm)
        self.output = UnetOutBlock(net.spatial_dims, net.features[0], n_targets)
        self.level_set = UnetOutBlock(net.spatial_dims, net.features[0], n_targets) if net.level_set_head else None

    @property
    def options(self) -> dict:
        """What a bundle records besides the card to rebuild this network: nothing."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, M, *S) -> fused logits (B, T, *S), every modality present."""
        return self.forward_features(x).logits

    def output_heads(self) -> OutputHeads:
        """The fused output, every branch's full-resolution head and its deep-supervision heads,
        each predicting every target (:mod:`ciml.nn.output_prior`)."""
        every = list(range(len(self.card.targets)))
        convs = [self.output.conv.conv, *(d.head.conv.conv for d in self.decoders.values()),
                 *(h.conv.conv for heads in self.scale_heads.values() for h in heads.heads)]
        return [(conv, every) for conv in convs]

    def encode(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Every branch's encoder features.

        Args:
            x: (B, M, *S) the modalities in the card's order.

        Returns:
            modality -> [ (B, features[i], *S / 2**i) for each level i ].
        """
        if x.shape[1] != len(self.card.modalities):
            raise ValueError(f"expected {len(self.card.modalities)} modality channels "
                             f"({', '.join(self.card.modality_names)}), got {x.shape[1]}")
        return {m: self.encoders[m](x[:, i:i + 1]) for i, m in enumerate(self.card.modality_names)}

    def decode(self, features: dict[str, list[torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
        """Every branch's decoder outputs.

        Args:
            features: :meth:`encode`'s output.

        Returns:
            modality -> [ (B, features[i], *S / 2**i) for each decoder scale i ], full resolution
            first: index 0 is what the fusion takes.
        """
        return {m: self.decoders[m].scales(f) for m, f in features.items()}

    def fuse(self, branch_features: dict[str, torch.Tensor],
             present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The modality-aware fusion of the branches' full-resolution features.

        Args:
            branch_features: modality -> (B, features[0], *S), every modality of the card.
            present: (B, M) > 0 where a case has the modality, or ``None`` (all present).

        Returns:
            fused features (B, features[0], *S) and attention weights (B, M, features[0], *S).
        """
        return self.attention([branch_features[m] for m in self.card.modality_names], present)

    def forward_attention(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights (B, M, features[0], *S) of x (B, M, *S), per modality and channel."""
        scales = self.decode(self.encode(x))
        return self.fuse({m: s[0] for m, s in scales.items()}, present)[1]

    def forward_features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> NetOutput:
        """Fused and per-branch logits plus the features the losses use.

        Args:
            x: (B, M, *S) the modalities in the card's order.
            present: (B, M) > 0 where a case has the modality, or ``None`` (all present); a
                sample with none present is fused as if all were.
        """
        scales = self.decode(self.encode(x))
        branch_features = {m: s[0] for m, s in scales.items()}
        fused, _ = self.fuse(branch_features, present)
        logits = self.output(fused)
        level_set = None if self.level_set is None else torch.tanh(self.level_set(fused))
        # Every branch runs even for an absent modality: the loss decides whom to supervise, and
        # the shapes stay the same for every batch.
        branch_scales = {m: [self.decoders[m].heads(s[0])[0], *self.scale_heads[m](s)] for m, s in scales.items()}
        per_subtask = {s.name: fused for s in self.card.subtasks}
        return NetOutput(
            logits=logits, kl=logits.new_zeros(()),
            encoder_features=branch_features, fused_features=per_subtask,
            branch_logits={m: s[0] for m, s in branch_scales.items()}, branch_scales=branch_scales,
            level_set=level_set, decoder_features=dict(per_subtask))
