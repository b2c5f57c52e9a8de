"""What a training step minimises: the supervised loss plus the PASSION and DTC terms in use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ciml.config import ModelCard
from ciml.errors import CIMLError
from ciml.losses import CIMLLoss
from ciml.losses.dtc import DTCLoss
from ciml.losses.passion import PassionLoss
from ciml.losses.passion_students import Forward, single_modality_students
from ciml.nn.output import NetOutput


def take(output: NetOutput, rows: slice) -> NetOutput:
    """The part of a batch's output that belongs to samples ``rows`` (the gates' KL stays
    batch-wide; the gates themselves are dropped).

    Args:
        output: a batch's output, every tensor (B, ...).
        rows: the samples to keep.
    """
    return dataclasses.replace(
        output, logits=output.logits[rows],
        level_set=None if output.level_set is None else output.level_set[rows],
        branch_logits={k: v[rows] for k, v in output.branch_logits.items()},
        branch_scales={k: [s[rows] for s in v] for k, v in output.branch_scales.items()},
        encoder_features={k: v[rows] for k, v in output.encoder_features.items()},
        fused_features={k: v[rows] for k, v in output.fused_features.items()},
        decoder_features=_take_shared(output.decoder_features, rows), gates={})


def _take_shared(features: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    """Slice every tensor once, so that sub-tasks sharing one tensor still share its slice."""
    sliced: dict[int, torch.Tensor] = {}
    return {k: sliced.setdefault(id(v), v[rows]) for k, v in features.items()}


class Objective:
    """The training loss of a card: CIMLLoss, plus PASSION when the card has missing rates,
    plus DTC when the network has a level-set head (then unlabelled samples count too).

    Args:
        card: the model card.
        epoch_steps: optimiser steps per epoch of PASSION's preference schedule (needed with
            missing rates; the trainer passes ``training.passion.epoch_steps`` or one pass
            over the training cases).
        reduce: sums a tensor over the DDP processes (``ciml.training.distributed``); identity
            by default (one process).

    ``objective(output, regions, present, n_labelled, step, images=None, forward=None) ->
    (total, logs)``: ``output`` (the network's ``forward_features``) covers the labelled
    samples first, then any unlabelled ones; ``regions`` (n_labelled, T, *S); ``present`` (B, M)
    or ``None``; ``step`` the 0-based optimiser step. PASSION runs the network again, once per
    modality, on the labelled samples: it needs the ``images`` (B, M, *S) ``output`` came from
    and ``forward(images, present) -> NetOutput``, the network's ``forward_features`` (with
    gradients, under the same autocast as the teacher).
    """

    def __init__(self, card: ModelCard, epoch_steps: int | None = None,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.card = card
        self.supervised = CIMLLoss(card)
        self.passion = self.dtc = None
        if card.training.missing_rates and card.training.passion.enabled:
            steps = epoch_steps or card.training.passion.epoch_steps
            if not steps:
                raise ValueError("PASSION needs the steps per epoch: pass epoch_steps or set "
                                 "training.passion.epoch_steps")
            self.passion = PassionLoss(card, steps, reduce)
        if card.network.level_set_head:
            self.dtc = DTCLoss(card)

    def __call__(self, output: NetOutput, regions: torch.Tensor, present: torch.Tensor | None,
                 n_labelled: int, step: int, images: torch.Tensor | None = None,
                 forward: Forward | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The step's loss and its logged parts.

        Args:
            output: the network's output for B samples, the labelled ones first.
            regions: (n_labelled, T, *S) binary target regions of the labelled samples.
            present: (B, M) > 0 where a sample has a modality, or ``None`` (all present).
            n_labelled: how many of the B samples are labelled.
            step: the 0-based optimiser step (DTC's ramp, PASSION's epochs).
            images: (B, M, *S) the input ``output`` came from (PASSION only).
            forward: ``forward(images, present) -> NetOutput``, the network (PASSION only).

        Returns:
            (total () to back-propagate, logs: name -> float).
        """
        batch = output.logits.shape[0]
        labelled = output if batch == n_labelled else take(output, slice(0, n_labelled))
        labelled_present = present[:n_labelled] if present is not None else None
        # PASSION supervises the unimodal outputs itself, weighted and masked by preference.
        supervised_output = (dataclasses.replace(labelled, branch_logits={}, branch_scales={})
                             if self.passion is not None else labelled)
        terms = self.supervised(supervised_output, regions, labelled_present, self.beta_at(step))
        total = terms.total
        logs = {"seg": float(torch.stack(list(terms.subtasks.values())).detach().mean()),
                "kl": float(terms.kl.detach())}
        if self.passion is not None:
            total = total + self._passion(labelled, regions, labelled_present, n_labelled, step, images, forward, logs)
        if self.dtc is not None:
            # One consistency mean over labelled and unlabelled samples together, as DTC's.
            rows = torch.arange(batch, device=output.logits.device) < n_labelled
            d = self.dtc(output, regions, step, labelled=rows)
            total = total + d.total
            logs["dtc"] = float(d.total.detach())
            if batch > n_labelled:  # diagnostic only: the unlabelled samples' consistency
                with torch.no_grad():
                    logs["dtc_unlabelled"] = float(self.dtc.consistency(output.logits[n_labelled:],
                                                                        output.level_set[n_labelled:]))
        logs["loss"] = float(total.detach())
        return total, logs

    def beta_at(self, step: int) -> float:
        """The KL weight at 0-based ``step``: ``training.beta`` after a linear warm-up from 0 over
        ``training.beta_warmup_steps`` (the gates first learn to pass, then to compress)."""
        t = self.card.training
        if t.beta_warmup_steps <= 0:
            return t.beta
        return t.beta * min(1.0, step / t.beta_warmup_steps)

    def _passion(self, teacher: NetOutput, regions: torch.Tensor, present: torch.Tensor | None,
                 n_labelled: int, step: int, images: torch.Tensor | None, forward: Forward | None,
                 logs: dict[str, float]) -> torch.Tensor:
        """PASSION's terms for the labelled samples; their logs go into ``logs``. The arguments are
        :meth:`__call__`'s, ``teacher`` its output's labelled rows."""
        names = self.card.modality_names
        if present is None:
            present = torch.ones(n_labelled, len(names), device=regions.device)
        students = {}
        if not self.passion.schedule.warming_up(step):
            if images is None or forward is None:
                raise CIMLError("PASSION runs the network once per modality: the objective needs the "
                                "batch's images and the network's forward_features")
            students = single_modality_students(forward, images[:n_labelled], present, names)
        p = self.passion(teacher, students, regions, present, step)
        logs["passion"] = float(p.total.detach())
        for name, values in (("distill", p.distillation), ("prototype", p.prototype), ("unimodal", p.unimodal)):
            if values:
                logs[f"passion_{name}"] = float(sum(v.detach() for v in values.values()))
        logs.update({f"passion_weight_{m}": w for m, w in p.weights.items()})
        logs["passion_lagging"] = float(len(p.lagging))
        return p.total

    def state_dict(self) -> dict:
        """PASSION's preference schedule (coefficients, step, epoch statistics), for checkpoints."""
        return {"passion": self.passion.state_dict()} if self.passion is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (a checkpoint without PASSION's state, e.g. from
        before its schedule existed, leaves the fresh schedule)."""
        if self.passion is not None and "passion" in state:
            self.passion.load_state_dict(state["passion"])
