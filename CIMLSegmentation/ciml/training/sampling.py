"""Training samples as a pure function of (seed, step, slot), so runs resume and scale exactly.

A usual shuffling DataLoader makes the sample seen at step s depend on everything drawn
before it, which breaks bit-exact resumption and makes a 2-process run see other crops than
a 1-process run. Here the sample in slot k of the global batch at step s is picked and
augmented with a random state derived only from (seed, s, k): a resumed run starts at step s
and sees the same samples; DDP rank r takes its own slots of the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from torch.utils.data import Dataset, Sampler

from ciml.config import ModelCard
from ciml.data.missing import apply_presence, sample_present

# Salts separating the random streams of one item: case choice, augmentation, alteration.
_AUGMENT_STREAM, _ALTER_STREAM = 1, 2


class StepSampler(Sampler[int]):
    """Yields item indices ``step * global_batch + slot`` for this rank's slots, from a step on.

    Args:
        start_step: first step to yield (a resumed run's step).
        max_steps: one past the last step.
        batch_size: samples per rank and step.
        rank, world_size: this process's share of the global batch.
    """

    def __init__(self, start_step: int, max_steps: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop = start_step, max_steps
        self.batch, self.rank, self.world = batch_size, rank, world_size

    def __iter__(self):
        global_batch = self.batch * self.world
        for step in range(self.start, self.stop):
            first = step * global_batch + self.rank * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.batch


class StepDataset(Dataset):
    """Item ``i`` is a random crop of a randomly chosen case, both seeded by ``(seed, i)``.

    Args:
        cases: a MONAI dataset (e.g. ``CacheDataset``) whose transform's random part is
            re-seeded per item; items may be dicts or lists of dicts (multi-crop transforms).
        seed: the run's seed.
        alter: optional ``alter(rng, item) -> item`` applied last with its own seeded stream
            (PASSION's modality dropping).
    """

    def __init__(self, cases: Dataset, seed: int,
                 alter: Callable[[np.random.Generator, dict[str, Any]], dict[str, Any]] | None = None):
        self.cases, self.seed, self.alter = cases, seed, alter

    def __len__(self) -> int:
        return 2**62  # indexed by step; the sampler decides which items exist

    def __getitem__(self, index: int):
        choice = np.random.default_rng([self.seed, index])
        case = int(choice.integers(len(self.cases)))
        self.cases.transform.set_random_state(seed=int(np.random.default_rng(
            [self.seed, index, _AUGMENT_STREAM]).integers(2**31)))
        item = self.cases[case]
        item = dict(item[0] if isinstance(item, list) else item)
        if self.alter is not None:
            item = self.alter(np.random.default_rng([self.seed, index, _ALTER_STREAM]), item)
        return item


def step_loader(cases: Dataset, seed: int, start_step: int, max_steps: int, batch_size: int,
                rank: int = 0, world_size: int = 1, num_workers: int = 0,
                alter: Callable[[np.random.Generator, dict[str, Any]], dict[str, Any]] | None = None,
                ) -> torch.utils.data.DataLoader:
    """A DataLoader over :class:`StepDataset` that yields one batch per step from ``start_step``."""

    return DataLoader(StepDataset(cases, seed, alter), batch_size=batch_size, num_workers=num_workers,
                      sampler=StepSampler(start_step, max_steps, batch_size, rank, world_size),
                      # its own generator: creating the iterator must not consume the global RNG
                      generator=torch.Generator().manual_seed(seed))


def presence_dropper(card: ModelCard) -> Callable[[np.random.Generator, dict[str, Any]], dict[str, Any]]:
    """PASSION: each training sample lacks modalities at the card's missing rates (the ``alter``
    of :func:`step_loader`); a sample keeps at least one of the modalities it has."""

    names, rates = card.modality_names, card.training.missing_rates

    def alter(rng: np.random.Generator, item: dict[str, Any]) -> dict[str, Any]:
        present = sample_present(rng, names, rates) & np.asarray(item["present"], dtype=bool)
        if not present.any():
            present = np.asarray(item["present"], dtype=bool)
        return {**item, "image": apply_presence(item["image"], present), "present": present}

    return alter
