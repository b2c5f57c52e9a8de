"""The supervised loss: per sub-task Dice + BCE on sigmoid outputs, beta times the gates' KL,
and the per-modality branch losses (MAML's deep supervision, PASSION's unimodal heads)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from monai.losses import DiceLoss
from torch import nn

from ciml.config import ModelCard
from ciml.nn.output import NetOutput


@dataclass
class LossTerms:
    """total: what is back-propagated; subtasks: each sub-task's Dice + BCE; kl: mean gate KL;
    branches: each modality branch's Dice + BCE (empty without branches)."""

    total: torch.Tensor
    subtasks: dict[str, torch.Tensor]
    kl: torch.Tensor
    branches: dict[str, torch.Tensor] = field(default_factory=dict)


class CIMLLoss(nn.Module):
    """Mean over sub-tasks of Dice + BCE on that sub-task's target channels, plus beta * KL.

    Targets can nest (BraTS WT contains TC contains ET), so every target is an independent
    sigmoid channel. MONAI's DiceCELoss applies BCE only to single-channel outputs (softmax CE
    otherwise), so the multi-label BCE is torch's BCEWithLogitsLoss next to MONAI's DiceLoss.

    Networks with per-modality branches (``NetOutput.branch_logits``) add
    ``card.training.deep_supervision_weight`` times the mean of the branches' Dice + BCE over
    all targets.

    Args:
        card: gives the sub-tasks and their targets' channels.
        beta: weight of the KL term; defaults to ``card.training.beta``.

    Shapes: ``forward(NetOutput with logits (B, T, *S), regions (B, T, *S) in {0, 1})``.
    """

    def __init__(self, card: ModelCard, beta: float | None = None):
        super().__init__()
        self.beta = card.training.beta if beta is None else beta
        self.branch_weight = card.training.deep_supervision_weight
        self.modalities = card.modality_names
        self.channels = {s.name: [card.target_index(t) for t in s.targets] for s in card.subtasks}
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = nn.BCEWithLogitsLoss()

    def segmentation(self, logits: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Dice + BCE of (B, C, *S) logits against (B, C, *S) binary regions."""
        return self.dice(logits, regions) + self.bce(logits, regions)

    def forward(self, output: NetOutput, regions: torch.Tensor, present: torch.Tensor | None = None) -> LossTerms:
        """``present`` (B, M): a branch is only supervised on the samples that have its modality."""
        regions = regions.to(output.logits.dtype)
        per_subtask = {name: self.segmentation(output.logits[:, ch], regions[:, ch])
                       for name, ch in self.channels.items()}
        total = torch.stack(list(per_subtask.values())).mean() + self.beta * output.kl
        branches = {}
        for m, logits in output.branch_logits.items():
            rows = slice(None) if present is None else present[:, self.modalities.index(m)] > 0
            if present is None or bool(rows.any()):
                branches[m] = self.segmentation(logits[rows], regions[rows])
        if branches and self.branch_weight > 0:
            total = total + self.branch_weight * torch.stack(list(branches.values())).mean()
        return LossTerms(total=total, subtasks=per_subtask, kl=output.kl, branches=branches)
