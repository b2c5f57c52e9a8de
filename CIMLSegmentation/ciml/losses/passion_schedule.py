"""PASSION's gradient-wise regularisation: per-modality preference coefficients, updated per epoch.

The authors' ``code/train.py`` (``imb_beta``, ``eta``, ``eta_ext``): after each epoch past the
warm-up, a modality whose prototype distance to the teacher was below the epoch's average
(a dominant one) loses weight and a lagging one gains it; the step grows 1.5-fold at every
100th epoch. The project trains by steps, so an epoch is a number of steps (the card's
``training.passion.epoch_steps``, by default one pass over the training cases).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

# The authors' clip range of the coefficients before they are rescaled.
PREFERENCE_BOUNDS = (0.1, 4.0)
# The authors multiply the step by 1.5 at every 100th epoch past the warm-up (``eta_ext``).
RATE_GROWTH = 1.5
RATE_GROWTH_EPOCHS = 100


class PreferenceSchedule(nn.Module):
    """The coefficients ``beta`` (M,) and the epoch statistics they are updated from.

    Every training step records each student's prototype distance (:meth:`record`); at the
    end of epoch ``e`` (0-based, :meth:`end_step`), if ``e >= warmup_epochs``:

    1. ``rate <- rate * 1.5`` when ``e`` is a multiple of 100 (so at the first update when the
       warm-up is 0, as in the authors' code);
    2. ``D_m`` = the epoch's mean distance of modality m over the samples having it, ``D`` the
       mean of ``D_m`` over the modalities seen; ``rp_m = (D - D_m) / D`` (> 0: dominant);
    3. ``beta <- clip(beta - rate * rp, 0.1, 4)``, then ``beta <- sqrt(M) beta / |beta|``
       (root mean square 1; the authors' ``2 beta / |beta|`` for their 4 modalities).

    The epoch statistics are summed over the DDP processes by ``reduce`` before the update, so
    every process computes the same coefficients. Everything is a buffer: the module's
    ``state_dict`` is what a checkpoint needs to resume mid-epoch.

    Args:
        n_modalities: M.
        epoch_steps: optimiser steps per epoch (>= 1).
        warmup_epochs: epochs before the first update (and before the task-wise masking).
        rate: the authors' ``eta``, the initial step of the coefficients (0 freezes them).
        reduce: sums a tensor over the DDP processes (identity by default).
    """

    def __init__(self, n_modalities: int, epoch_steps: int, warmup_epochs: int = 0, rate: float = 0.01,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if epoch_steps < 1:
            raise ValueError(f"epoch_steps must be at least 1, got {epoch_steps}")
        self.epoch_steps, self.warmup_epochs = epoch_steps, warmup_epochs
        self.reduce = reduce if reduce is not None else (lambda x: x)
        self.register_buffer("beta", torch.ones(n_modalities))
        self.register_buffer("rate", torch.tensor(float(rate)))
        self.register_buffer("distance_sum", torch.zeros(n_modalities, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(n_modalities, dtype=torch.float64))

    def epoch(self, step: int) -> int:
        """The 0-based epoch of 0-based optimiser step ``step``."""
        return step // self.epoch_steps

    def warming_up(self, step: int) -> bool:
        """Whether ``step`` lies in the warm-up epochs."""
        return self.epoch(step) < self.warmup_epochs

    @torch.no_grad()
    def record(self, distance: torch.Tensor, counted: torch.Tensor) -> None:
        """Add one step's (B, M) distances where ``counted`` (B, M) to the epoch's statistics."""
        keep = counted.to(torch.float64).cpu()
        self.distance_sum += (distance.detach().to(torch.float64).cpu() * keep).sum(0)
        self.count += keep.sum(0)

    def end_step(self, step: int) -> bool:
        """Call after every training step; updates at the last step of an epoch. Returns whether
        it updated the coefficients."""
        if (step + 1) % self.epoch_steps:
            return False
        return self.end_epoch(self.epoch(step))

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> bool:
        """Close epoch ``epoch``: update the coefficients (past the warm-up), reset the statistics."""
        updated = epoch >= self.warmup_epochs
        if updated:
            stats = self.reduce(torch.stack([self.distance_sum, self.count]))
            self.beta.copy_(self.updated_beta(stats[0], stats[1], epoch))
        self.distance_sum.zero_()
        self.count.zero_()
        return updated

    def updated_beta(self, distance_sum: torch.Tensor, count: torch.Tensor, epoch: int) -> torch.Tensor:
        """The coefficients after epoch ``epoch`` from its (M,) summed distances and counts (also
        grows ``rate`` at the 100-epoch marks)."""
        if epoch % RATE_GROWTH_EPOCHS == 0:
            self.rate.mul_(RATE_GROWTH)
        seen = count > 0
        if not seen.any():
            return self.beta.clone()
        mean = torch.where(seen, distance_sum / count.clamp(min=1), torch.zeros_like(distance_sum))
        average = mean[seen].mean()
        if average <= 0:
            return self.beta.clone()
        preference = torch.where(seen, (average - mean) / average, torch.zeros_like(mean))
        beta = (self.beta.to(torch.float64) - self.rate.to(torch.float64) * preference).clamp(*PREFERENCE_BOUNDS)
        return (beta * math.sqrt(beta.numel()) / beta.norm()).to(self.beta.dtype)
