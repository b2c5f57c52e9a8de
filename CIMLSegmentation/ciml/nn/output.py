"""What every network of the project returns from ``forward_features``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GateOutput:
    """One Cross-modality Information Gate's view of a forward pass.

    Attributes:
        message: (B, C, *S) what the auxiliary adds to the primary's features.
        attention: (B, 1, *S) the cross-modal spatial attention map in 0..1.
        kl: () KL divergence of the bottleneck to N(0, I) per voxel, summed over channels
            (zero without a bottleneck and in eval).
        kl_term: () the KL the loss penalises: with free bits each channel's KL is raised to the
            allowance first; equal to ``kl`` without free bits.
    """

    message: torch.Tensor
    attention: torch.Tensor
    kl: torch.Tensor
    kl_term: torch.Tensor | None = None


@dataclass
class NetOutput:
    """A forward pass: the logits plus what the losses and Grad-CAM need.

    Attributes:
        logits: (B, T, *S) one sigmoid logit channel per target, in the card's target order.
        kl: () mean KL over all gates (zero for networks without gates).
        kl_term: () mean over all gates of the KL the loss penalises (free bits applied), or
            ``None``: the same as ``kl``.
        gates: (sub-task, auxiliary, level) -> that gate's output.
        encoder_features: modality -> its deepest encoder features (B, C, *S'), the layer
            Grad-CAM uses for a primary modality and PASSION's unimodal prototypes use.
        fused_features: sub-task -> its primary's deepest features after the gates' messages
            (B, C, *S'), PASSION's multimodal prototypes.
        branch_logits: modality -> (B, T, *S) logits predicted from that modality alone (MAML's
            deep-supervised branches; CIML's modality heads when ``network.modality_heads``).
        level_set: (B, T, *S) signed-distance regression in [-1, 1] (negative inside), when
            ``network.level_set_head`` (DTC).
        decoder_features: sub-task -> (B, features[0], *S) the last decoder features before
            the output head (for a network with one fused decoder, every sub-task names the same
            tensor): the space PASSION's pixel and prototype self-distillation compare the
            single-modality and all-modality passes in.
        branch_scales: modality -> that branch's logits at every deep-supervised decoder scale,
            full resolution first: index i is (B, T, *S / 2**i) and index 0 is
            ``branch_logits[modality]`` (MAML, whose branches are deep-supervised with nnU-Net's
            weights, :func:`ciml.nn.deep_supervision.supervised_scale_weights`); empty for
            networks whose branches give full-resolution logits only.
    """

    logits: torch.Tensor
    kl: torch.Tensor
    kl_term: torch.Tensor | None = None
    gates: dict[tuple[str, str, int], GateOutput] = field(default_factory=dict)
    encoder_features: dict[str, torch.Tensor] = field(default_factory=dict)
    fused_features: dict[str, torch.Tensor] = field(default_factory=dict)
    branch_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    level_set: torch.Tensor | None = None
    decoder_features: dict[str, torch.Tensor] = field(default_factory=dict)
    branch_scales: dict[str, list[torch.Tensor]] = field(default_factory=dict)
