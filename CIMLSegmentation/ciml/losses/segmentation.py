"""The supervised loss: per sub-task Dice + BCE on sigmoid outputs, beta times the gates' KL,
and the per-modality branch losses (MAML's multi-scale deep supervision, PASSION's unimodal heads)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from ciml.config import ModelCard
from ciml.nn.deep_supervision import supervised_scale_weights
from ciml.nn.output import NetOutput

# nnU-Net downsamples its targets for deep supervision with an order-0 (nearest-neighbour) resize
# (DownsampleSegForDSTransform2); MAMLTrainerV2 uses those targets for every branch.
TARGET_DOWNSAMPLING = "nearest"


@dataclass
class LossTerms:
    """What :class:`CIMLLoss` computed.

    Attributes:
        total: () what is back-propagated.
        subtasks: sub-task -> () its Dice + BCE on the network's logits.
        kl: () mean gate KL.
        branches: modality -> () its branch's Dice + BCE (for multi-scale branches the
            nnU-Net-weighted sum over scales, the weights summing to 1); empty without branches.
    """

    total: torch.Tensor
    subtasks: dict[str, torch.Tensor]
    kl: torch.Tensor
    branches: dict[str, torch.Tensor] = field(default_factory=dict)


class CIMLLoss(nn.Module):
    """Mean over sub-tasks of Dice + BCE on that sub-task's target channels, plus beta * KL.

    Targets can nest (BraTS WT contains TC contains ET), so every target is an independent
    sigmoid channel. MONAI's DiceCELoss applies BCE only to single-channel outputs (softmax CE
    otherwise), so the multi-label BCE is torch's BCEWithLogitsLoss next to MONAI's DiceLoss.

    Branch losses, with lambda = ``card.training.deep_supervision_weight``:

    - networks with multi-scale branches (``NetOutput.branch_scales``, MAML) deep-supervise
      every branch as ``MAMLTrainerV2`` does: branch m's loss is
      ``L_m = sum_i w_i (Dice + BCE)(branch_scales[m][i], regions downsampled to scale i)``
      with nnU-Net's weights w (:func:`~ciml.nn.deep_supervision.supervised_scale_weights`),
      the regions downsampled by nearest neighbour as nnU-Net does, and the total adds
      ``lambda / w_0 * sum_m L_m`` (a sum over branches, as the authors'). With lambda = 1 this
      is the authors' loss ``w_0 * fused + sum_m L_m`` divided by w_0, i.e. each branch's
      full-resolution output weighs as much as the fused output; the fused output has no
      lower-scale terms (the authors' has none);
    - networks with full-resolution branches only (``NetOutput.branch_logits``, CIML's
      ``network.modality_heads``) add ``lambda`` times the mean of the branches' Dice + BCE.

    Args:
        card: gives the sub-tasks and their targets' channels, the modalities and the number of
            levels (the deep-supervision weights).
        beta: weight of the KL term; defaults to ``card.training.beta``.

    Shapes: ``forward(NetOutput with logits (B, T, *S), regions (B, T, *S) in {0, 1}, present
    (B, M) or None)``.
    """

    def __init__(self, card: ModelCard, beta: float | None = None):
        super().__init__()
        self.beta = card.training.beta if beta is None else beta
        self.branch_weight = card.training.deep_supervision_weight
        self.modalities = card.modality_names
        self.channels = {s.name: [card.target_index(t) for t in s.targets] for s in card.subtasks}
        self.scale_weights = supervised_scale_weights(len(card.network.features))
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = nn.BCEWithLogitsLoss()

    def segmentation(self, logits: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Dice + BCE of (B, C, *S) logits against (B, C, *S) binary regions."""
        return self.dice(logits, regions) + self.bce(logits, regions)

    def deep_supervision(self, scales: list[torch.Tensor], regions: torch.Tensor) -> torch.Tensor:
        """nnU-Net's weighted sum over scales of Dice + BCE.

        Args:
            scales: [ (B, C, *S / 2**i) ] logits, full resolution first, one per weight.
            regions: (B, C, *S) binary full-resolution regions, downsampled here to each scale.
        """
        if len(scales) != len(self.scale_weights):
            raise ValueError(f"expected {len(self.scale_weights)} deep-supervised scales "
                             f"(nnU-Net weights {self.scale_weights}), got {len(scales)}")
        total = regions.new_zeros(())
        for weight, logits in zip(self.scale_weights, scales):
            target = regions
            if logits.shape[2:] != regions.shape[2:]:
                target = F.interpolate(regions, size=logits.shape[2:], mode=TARGET_DOWNSAMPLING)
            total = total + weight * self.segmentation(logits, target)
        return total

    def forward(self, output: NetOutput, regions: torch.Tensor, present: torch.Tensor | None = None,
                beta: float | None = None) -> LossTerms:
        """The loss of a batch.

        Args:
            output: the network's output for B samples.
            regions: (B, T, *S) binary target regions in the card's target order.
            present: (B, M) > 0 where a case has the modality; a branch is only supervised on
                the samples that have its modality. ``None``: all present.
            beta: this step's KL weight (the warm-up's); ``None``: :attr:`beta`.
        """
        regions = regions.to(output.logits.dtype)
        per_subtask = {name: self.segmentation(output.logits[:, ch], regions[:, ch])
                       for name, ch in self.channels.items()}
        kl_term = output.kl if output.kl_term is None else output.kl_term
        total = torch.stack(list(per_subtask.values())).mean() + (self.beta if beta is None else beta) * kl_term
        branches = {}
        for m, logits in output.branch_logits.items():
            rows = slice(None) if present is None else present[:, self.modalities.index(m)] > 0
            if present is not None and not bool(rows.any()):
                continue
            scales = output.branch_scales.get(m)
            if scales:
                if scales[0].shape[0] != regions.shape[0]:
                    raise ValueError(f"branch_scales of {m} cover {scales[0].shape[0]} samples, "
                                     f"the regions {regions.shape[0]}")
                branches[m] = self.deep_supervision([s[rows] for s in scales], regions[rows])
            else:
                branches[m] = self.segmentation(logits[rows], regions[rows])
        if branches and self.branch_weight > 0:
            stacked = torch.stack(list(branches.values()))
            if output.branch_scales:
                total = total + self.branch_weight / self.scale_weights[0] * stacked.sum()
            else:
                total = total + self.branch_weight * stacked.mean()
        return LossTerms(total=total, subtasks=per_subtask, kl=output.kl, branches=branches)
