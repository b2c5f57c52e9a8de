"""The accuracy study's plan: which methods, on which data, with which training budget.

Like nnU-Net's plans, one object drives the whole study (``ciml study``, docs/BENCHMARKS.md):
every method of a task is trained with the same budget (the ``budget`` card overrides: steps,
patch, batch, widths, validation), on the same cases, with the same seeds, and scored on the same
held-out cases. A method is a change to the task's preset card plus ``ciml train`` arguments, so
each run is an ordinary, reproducible ``ciml train`` command.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ciml.config import preset_dict
from ciml.errors import CIMLError

CardEdit = Callable[[dict[str, Any]], dict[str, Any]]


def _without_auxiliaries(card: dict[str, Any]) -> dict[str, Any]:
    """Primary-only: every decoder sees its primary modality and nothing else."""
    for s in card["subtasks"]:
        s["auxiliaries"] = []
    return card


def _one_decoder(card: dict[str, Any]) -> dict[str, Any]:
    """No task decomposition: one decoder for every target, fed by the reference modality with
    every other modality gated in as an auxiliary (the gates kept, the decomposition removed)."""
    reference = card["reference"]
    card["subtasks"] = [{
        "name": "all", "targets": [t["name"] for t in card["targets"]], "primary": reference,
        "auxiliaries": [m["name"] for m in card["modalities"] if m["name"] != reference]}]
    return card


def _set(**sections: dict[str, Any]) -> CardEdit:
    """An edit that sets fields of card sections: ``_set(network={...}, training={...})``."""
    def edit(card: dict[str, Any]) -> dict[str, Any]:
        for section, values in sections.items():
            card.setdefault(section, {}).update(values)
        return card
    return edit


def _beta_warmup(card: dict[str, Any]) -> dict[str, Any]:
    """The KL weight warms up over the first half of the budget's steps."""
    card["training"]["beta_warmup_steps"] = card["training"]["max_steps"] // 2
    return card


@dataclass(frozen=True)
class Method:
    """One trained configuration of the study.

    Args:
        name: identifier, used in run folder names and tables.
        description: one line for the report.
        arch: ``ciml train --arch``.
        edit: change to the task's card (ablations), or ``None``.
        missing_modalities: train with each auxiliary absent at the plan's rates.
        passion: with ``missing_modalities``, add PASSION's losses; without it the method is the
            control, plain modality dropout at the same rates (``training.passion.enabled: false``).
        labelled: ``"all"`` training cases, or ``"few"`` (the plan's ``few_labelled``).
        unlabelled: also train on the remaining cases without their labels (DTC).
        needs_subtasks: least number of sub-tasks in the task's card for the method to differ
            from CIML (no decomposition needs two).
    """

    name: str
    description: str
    arch: str = "ciml"
    edit: CardEdit | None = None
    missing_modalities: bool = False
    passion: bool = True
    labelled: str = "all"
    unlabelled: bool = False
    needs_subtasks: int = 1


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ciml", "CIML: one decoder per sub-task, gated messages (bottleneck x attention)"),
    Method("early-fusion", "MONAI DynUNet on all modalities stacked, parameter count matched", arch="early-fusion"),
    Method("maml", "MAML: modality-aware attention, deep-supervised branches", arch="maml"),
    Method("primary-only", "CIML without auxiliaries: each decoder sees its primary only", edit=_without_auxiliaries),
    Method("no-bottleneck", "CIML, gates without the variational bottleneck (attention only)",
           edit=_set(network={"gate_bottleneck": False})),
    Method("gates-deep", "CIML with gates at the two deepest levels only (the default before gates at every level)",
           edit=_set(network={"gate_levels": [-2, -1]})),
    Method("no-attention", "CIML, gates without the spatial attention (bottleneck only)",
           edit=_set(network={"gate_attention": False})),
    Method("no-decomposition", "CIML with one decoder for all targets, all other modalities gated in",
           edit=_one_decoder, needs_subtasks=2),
    Method("gate-latent", "CIML with the latent added as is (no decoder): the gate before the decoded message",
           edit=_set(network={"gate_message": "latent"})),
    Method("gate-free-bits", "CIML, decoded gate, free bits: each latent channel carries 0.02 nats per voxel free",
           edit=_set(training={"free_bits": 0.02})),
    Method("gate-latent-free-bits", "CIML, latent added as is, with the same free bits",
           edit=_set(network={"gate_message": "latent"}, training={"free_bits": 0.02})),
    Method("gate-warmup", "CIML, decoded gate, the KL weight rising from 0 over the first half of training",
           edit=_beta_warmup),
    Method("ciml-passion", "CIML trained with PASSION for missing modalities", missing_modalities=True),
    Method("ciml-dropout", "CIML trained with the same modality dropout, without PASSION's losses",
           missing_modalities=True, passion=False),
    Method("maml-passion", "MAML trained with PASSION for missing modalities", arch="maml", missing_modalities=True),
    Method("maml-dropout", "MAML trained with the same modality dropout, without PASSION's losses", arch="maml",
           missing_modalities=True, passion=False),
    Method("early-fusion-passion", "early fusion trained with PASSION for missing modalities", arch="early-fusion",
           missing_modalities=True),
    Method("supervised-few", "CIML on the few labelled cases only", labelled="few"),
    Method("dtc-few", "CIML + DTC on the few labelled cases and the rest unlabelled", labelled="few", unlabelled=True),
)}


@dataclass(frozen=True)
class StudyPlan:
    """Everything one task's study needs.

    Args:
        task: preset name, which is also the ``ciml sample-data --kind``.
        train_cases: synthetic cases for training (validation split off them).
        test_cases: held-out synthetic cases, generated with ``test_seed``.
        budget: card overrides shared by every method (``{"network": {...}, "training": {...},
            "inference": {...}, "spacing": ...}``).
        methods: methods compared on all labelled cases.
        missing_models: methods also evaluated with each auxiliary missing.
        missing_rate: every auxiliary's absence rate in training, unless ``missing_rates``.
        missing_rates: per-auxiliary absence rates in training (imbalanced, as PASSION's paper
            studies: one modality missing far more often than the others).
        semi_supervised: the few-labels methods (empty: no semi-supervised study).
        few_labelled: labelled cases of the semi-supervised study (validation included).
        seeds: training seeds; every method runs each.
        val_fraction: share of the labelled training cases kept for validation.
        data_seed: seed of the training cases; ``test_seed`` of the held-out ones.
    """

    task: str
    train_cases: int
    test_cases: int
    budget: dict[str, Any]
    methods: tuple[str, ...]
    missing_models: tuple[str, ...] = ()
    missing_rate: float = 0.3
    missing_rates: dict[str, float] = field(default_factory=dict)
    semi_supervised: tuple[str, ...] = ()
    few_labelled: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)
    val_fraction: float = 0.2
    data_seed: int = 0
    test_seed: int = 1
    size: str = "small"

    @property
    def all_methods(self) -> tuple[str, ...]:
        extra = [m for m in (*self.missing_models, *self.semi_supervised) if m not in self.methods]
        return (*self.methods, *extra)

    def card(self, method: str) -> dict[str, Any]:
        """The card (plain data) a method trains: the preset, the budget, the method's edit."""
        m = METHODS[method]
        card = preset_dict(self.task)
        for key, value in self.budget.items():
            if isinstance(value, dict):
                card.setdefault(key, {}).update(copy.deepcopy(value))
            else:
                card[key] = copy.deepcopy(value)
        card["name"] = f"{self.task}-{method}"
        if m.missing_modalities and not m.passion:
            card.setdefault("training", {})["passion"] = {"enabled": False}
        return m.edit(card) if m.edit else card

    def auxiliaries(self) -> list[str]:
        """Modalities that can be missing: all but the reference, which gives the output grid."""
        card = preset_dict(self.task)
        return [m["name"] for m in card["modalities"] if m["name"] != card["reference"]]

    def training_missing_rates(self) -> dict[str, float]:
        """Each auxiliary's absence rate in the missing-modality methods' training."""
        return {a: self.missing_rates.get(a, self.missing_rate) for a in self.auxiliaries()}

    def applicable(self, method: str) -> bool:
        return len(preset_dict(self.task)["subtasks"]) >= METHODS[method].needs_subtasks


def _budget(spacing: float, patch: list[int], batch_size: int, max_steps: int = 300) -> dict[str, Any]:
    """The card overrides every method of a task shares: widths, patch = window, optimiser."""
    return {
        "spacing": [spacing] * 3,
        "network": {"features": [8, 16, 32, 64]},
        "training": {"patch_size": patch, "batch_size": batch_size, "max_steps": max_steps,
                     "validation_interval": 100, "learning_rate": 2e-3, "warmup_steps": 20},
        "inference": {"roi_size": patch, "overlap": 0.5},
    }


# The shapes cases at 4 mm (32^3): one patch holds the whole case, so every step sees every
# candidate and its cue; 2 mm crops of 32^3 stayed below the primary-only ceiling in 300 steps.
_SHAPES_BUDGET = _budget(4.0, [32, 32, 32], batch_size=2)

# The built-in sample model's network and patch (which learns every sub-region at 2.5 mm; at
# 3.75 mm the enhancing rim is about a voxel thick and was not learnt in 200 steps), with a
# batch of one so that the CPU study fits in an afternoon.
_BRATS_BUDGET = _budget(2.5, [64, 64, 64], batch_size=1)

PLANS: dict[str, StudyPlan] = {
    "shapes": StudyPlan(
        task="shapes", train_cases=24, test_cases=12, budget=_SHAPES_BUDGET,
        methods=("ciml", "early-fusion", "maml", "primary-only", "no-bottleneck", "no-attention",
                 "gates-deep", "gate-latent", "gate-free-bits", "gate-latent-free-bits", "gate-warmup"),
        missing_models=("ciml", "ciml-dropout", "ciml-passion", "maml", "maml-dropout", "maml-passion",
                        "early-fusion", "early-fusion-passion", "no-bottleneck", "gate-latent",
                        "gate-free-bits", "gate-latent-free-bits", "gate-warmup"),
        # Imbalanced, as PASSION's paper: the complementary cue is missing in most training cases.
        missing_rates={"cue": 0.7, "echo": 0.1},
        semi_supervised=("supervised-few", "dtc-few")),
    "brats": StudyPlan(
        task="brats", train_cases=24, test_cases=8, budget=_BRATS_BUDGET,
        methods=("ciml", "early-fusion", "maml", "primary-only", "no-decomposition", "no-bottleneck",
                 "no-attention", "gates-deep", "gate-latent"),
        missing_models=("ciml", "ciml-dropout", "ciml-passion", "maml", "maml-dropout", "maml-passion",
                        "early-fusion", "early-fusion-passion", "no-bottleneck", "gate-latent"),
        # Imbalanced, as PASSION's paper: FLAIR (WT's primary) missing in most training cases.
        missing_rates={"t1": 0.1, "t2": 0.1, "flair": 0.7}),
}


def plan_for(task: str, **changes: Any) -> StudyPlan:
    """The task's plan with ``changes`` (e.g. fewer seeds or steps for a quick look)."""
    if task not in PLANS:
        raise CIMLError(f"no study plan for {task!r} (known: {', '.join(PLANS)})")
    plan = PLANS[task]
    fields_ = {k: v for k, v in changes.items() if v is not None}
    if "max_steps" in fields_:
        budget = copy.deepcopy(plan.budget)
        budget["training"]["max_steps"] = fields_.pop("max_steps")
        fields_["budget"] = budget
    return replace(plan, **fields_)
