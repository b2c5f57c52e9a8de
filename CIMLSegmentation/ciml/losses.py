"""Training losses: per sub-task Dice + BCE on sigmoid outputs, plus beta times the gates' KL."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.losses import DiceLoss
from torch import nn

from ciml.config import ModelCard
from ciml.nn.output import NetOutput


@dataclass
class LossTerms:
    """total: what is back-propagated; subtasks: each sub-task's Dice + BCE; kl: mean gate KL."""

    total: torch.Tensor
    subtasks: dict[str, torch.Tensor]
    kl: torch.Tensor


class CIMLLoss(nn.Module):
    """Mean over sub-tasks of Dice + BCE on that sub-task's target channels, plus beta * KL.

    Targets can nest (BraTS WT contains TC contains ET), so every target is an independent
    sigmoid channel. MONAI's DiceCELoss applies BCE only to single-channel outputs (softmax CE
    otherwise), so the multi-label BCE is torch's BCEWithLogitsLoss next to MONAI's DiceLoss.

    Args:
        card: gives the sub-tasks and their targets' channels.
        beta: weight of the KL term; defaults to ``card.training.beta``.

    Shapes: ``forward(NetOutput with logits (B, T, *S), regions (B, T, *S) in {0, 1})``.
    """

    def __init__(self, card: ModelCard, beta: float | None = None):
        super().__init__()
        self.beta = card.training.beta if beta is None else beta
        self.channels = {s.name: [card.target_index(t) for t in s.targets] for s in card.subtasks}
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, output: NetOutput, regions: torch.Tensor) -> LossTerms:
        regions = regions.to(output.logits.dtype)
        per_subtask = {}
        for name, ch in self.channels.items():
            logits, target = output.logits[:, ch], regions[:, ch]
            per_subtask[name] = self.dice(logits, target) + self.bce(logits, target)
        seg = torch.stack(list(per_subtask.values())).mean()
        return LossTerms(total=seg + self.beta * output.kl, subtasks=per_subtask, kl=output.kl)
