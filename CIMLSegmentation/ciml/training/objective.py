"""What a training step minimises: the supervised loss plus the PASSION and DTC terms in use."""

from __future__ import annotations

import dataclasses

import torch

from ciml.config import ModelCard
from ciml.errors import CIMLError
from ciml.losses import CIMLLoss
from ciml.losses.dtc import DTCLoss
from ciml.losses.passion import PassionLoss
from ciml.nn.output import NetOutput


def take(output: NetOutput, rows: slice) -> NetOutput:
    """The part of a batch's output that belongs to samples ``rows`` (the KL stays batch-wide)."""
    return dataclasses.replace(
        output, logits=output.logits[rows],
        level_set=None if output.level_set is None else output.level_set[rows],
        branch_logits={k: v[rows] for k, v in output.branch_logits.items()},
        encoder_features={k: v[rows] for k, v in output.encoder_features.items()},
        fused_features={k: v[rows] for k, v in output.fused_features.items()}, gates={})


class Objective:
    """The training loss of a card: CIMLLoss, plus PASSION when the card has missing rates,
    plus DTC when the network has a level-set head (then unlabelled samples count too).

    Args:
        card: the model card.

    ``objective(output, regions, present, n_labelled, step) -> (total, logs)``: ``output`` covers
    the labelled samples first, then any unlabelled ones; ``regions`` (n_labelled, T, *S).
    """

    def __init__(self, card: ModelCard):
        self.supervised = CIMLLoss(card)
        self.passion = self.dtc = None
        if card.training.missing_rates:
            self.passion = PassionLoss(card)
        if card.network.level_set_head:
            self.dtc = DTCLoss(card)

    def __call__(self, output: NetOutput, regions: torch.Tensor, present: torch.Tensor | None,
                 n_labelled: int, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        labelled = output if output.logits.shape[0] == n_labelled else take(output, slice(0, n_labelled))
        labelled_present = present[:n_labelled] if present is not None else None
        terms = self.supervised(labelled, regions, labelled_present)
        total = terms.total
        logs = {"seg": float(torch.stack(list(terms.subtasks.values())).detach().mean()),
                "kl": float(terms.kl.detach())}
        if self.passion is not None:
            if not labelled.branch_logits:
                raise CIMLError("missing-modality training (PASSION) needs per-modality outputs: "
                                "use --arch maml, or a ciml card with network.modality_heads")
            p = self.passion(labelled, regions, labelled_present)
            total = total + p.total
            logs["passion"] = float(p.total.detach())
        if self.dtc is not None:
            d = self.dtc(labelled, regions, step)
            total = total + d.total
            logs["dtc"] = float(d.total.detach())
            if output.logits.shape[0] > n_labelled:
                u = self.dtc(take(output, slice(n_labelled, None)), None, step)
                total = total + u.total
                logs["dtc_unlabelled"] = float(u.total.detach())
        logs["loss"] = float(total.detach())
        return total, logs

    def state_dict(self) -> dict:
        """The loss terms' own state (PASSION's preference coefficients), for checkpoints."""
        return self.passion.state_dict() if self.passion is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.passion is not None and state:
            self.passion.load_state_dict(state)
