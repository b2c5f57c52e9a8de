"""PASSION's students: the network itself, run again with one modality only.

In the authors' ``code/models/rfnet.py`` the shared fusion decoder runs once with the case's
modality mask (the teacher) and once per modality with a one-modality mask (the students).
Here the whole network runs again through ``forward_features(images, present)`` with a
one-hot ``present``: every network of the project withholds a modality that way (CIML: no
gate message and a zero channel; MAML: the branch left out; early fusion: a zero channel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ciml.data.missing import apply_presence
from ciml.nn.output import NetOutput

# ``forward(images (B, M, *S), present (B, M)) -> NetOutput``: the network's forward_features.
Forward = Callable[[torch.Tensor, torch.Tensor], NetOutput]


@dataclass
class StudentPass:
    """One modality's student on the samples that have that modality.

    Attributes:
        modality: the modality the student sees.
        rows: (B,) bool, the samples of the batch it ran on.
        output: the network's output for those rows (n = rows.sum() of them).
    """

    modality: str
    rows: torch.Tensor
    output: NetOutput


def single_modality_students(forward: Forward, images: torch.Tensor, present: torch.Tensor,
                             modality_names: Sequence[str]) -> dict[str, StudentPass]:
    """Run one student per modality that some sample has (the authors run every modality's
    path and mask the losses by presence; running only the rows that have it gives the same
    losses for less work).

    Args:
        forward: the network's ``forward_features`` (with gradients: the students learn).
        images: (B, M, *S) the batch as the teacher saw it (absent modalities zeroed).
        present: (B, M) 1 where a sample has a modality.
        modality_names: the M modalities in channel order.

    Returns:
        modality -> :class:`StudentPass`, whose input keeps only that modality's channel.
    """
    present = present.to(device=images.device).bool()
    students = {}
    for i, m in enumerate(modality_names):
        rows = present[:, i]
        if not rows.any():
            continue
        alone = torch.zeros(int(rows.sum()), len(modality_names), dtype=torch.bool, device=images.device)
        alone[:, i] = True
        students[m] = StudentPass(m, rows, forward(apply_presence(images[rows], alone), alone.to(images.dtype)))
    return students
