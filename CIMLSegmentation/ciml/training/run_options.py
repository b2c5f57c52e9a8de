"""What a training run is asked to do beyond its card (:class:`RunOptions`), and what changes as
it goes (:class:`RunState`, checkpointed with the weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunOptions:
    """How a run trains, beyond what the card's ``training`` section says.

    Args:
        out: the run folder.
        arch: network architecture (``ciml``, ``early-fusion``, ``maml``).
        max_steps: optimiser steps; ``None`` takes ``card.training.max_steps``, or, with
            ``max_minutes``, leaves the time limit alone to end the run.
        max_minutes: a wall-clock limit of this run (``None``: none). Once it has passed, the run
            stops after the current step, validates, and keeps the best bundle (the latest
            weights when nothing was validated), so a bundle is always written. The learning
            rate's cosine decay follows whichever of steps and minutes runs out first, so a run
            cut by the clock still ends at a low rate.
        bundle: what ``out/bundle`` holds: ``best``, the weights of the best validation Dice, or
            ``last``, the weights at the last validation step (the end of the run). With few
            validation cases the best of them is chosen by noise: fine-tuning on 10 real cases
            kept a worse bundle than its last weights (docs/real-scans.md).
        keep_bundles: also keep the weights at every validation step (validation cases or not)
            as bundles, in ``out/bundles/step-N`` (to score the run's course on other cases).
        device: ``auto``, ``cpu`` or ``cuda``.
        init: a bundle to fine-tune from (its weights; the card must describe the same network).
        freeze_encoders: keep the modality encoders' weights fixed (fine-tuning).
        num_workers: DataLoader worker processes.
        cache: ``memory``, ``disk`` (in ``out/cache``) or ``none``.
        command: the command line, recorded in the bundle.
        data: a description of the training data, recorded in the bundle.
    """

    out: str
    arch: str = "ciml"
    max_steps: int | None = None
    max_minutes: float | None = None
    device: str = "auto"
    init: str | None = None
    freeze_encoders: bool = False
    bundle: str = "best"
    keep_bundles: bool = False
    num_workers: int = 0
    cache: str = "memory"
    command: str = ""
    data: str = ""


@dataclass
class RunState:
    """What changes as a run goes; checkpointed with the weights."""

    step: int = 0
    best_dice: float = -1.0
    best_step: int = 0
    stale_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
