"""The modality relations: per target and modality, what withholding the modality changes.

From the outputs with every modality and with each one withheld
(:func:`ciml.inference.effects.predict_withheld`), on the case's grids:

- ``volume_change_ml``: the target's volume without the modality minus with it, both read from
  label maps written as `ciml segment` writes them (so it equals what a run without the
  modality reports);
- ``dice_without``: Dice between the target with and without the modality (1: no change);
- ``share`` (the report's ``contributions``): the modality's part of the summed effects, where
  a modality's effect on a target is the summed absolute change of the target's probability
  inside the body;
- the signed effect map ``effect_<modality>``: probability with all modalities minus without
  this one (positive: the modality adds to the target there; negative: it suppresses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ciml.config import ModelCard
from ciml.data import Case
from ciml.data.geometry import nonzero_box

ABSENT = "absent"


@dataclass
class Relations:
    """Everything the report needs about what each modality does (the maps: :func:`effect_maps`).

    Attributes:
        effects: target -> modality -> ``{"volume_change_ml", "dice_without", "share"}``, or
            :data:`ABSENT` for a modality that was not given.
        contributions: target -> modality -> share (present modalities only; sums to 1 per
            target unless no modality changes anything, then all 0).
    """

    effects: dict[str, dict[str, object]]
    contributions: dict[str, dict[str, float]]


def effect_maps(card: ModelCard, case: Case, probabilities: torch.Tensor, withheld: torch.Tensor,
                body: np.ndarray) -> dict[str, np.ndarray]:
    """Modality -> (T, *S) signed effect per target on the working grid (present modalities only).

    Args:
        card: the model card.
        case: the loaded case (which modalities were given).
        probabilities: (T, *S) with every given modality, on the working grid.
        withheld: (M, T, *S) probabilities with each modality withheld, on the working grid.
        body: (*S) boolean body mask on the working grid: the maps are zero outside it.
    """
    body_t = torch.from_numpy(body)
    return {m: ((probabilities - withheld[j]) * body_t).numpy()
            for j, m in enumerate(card.modality_names) if case.present[j]}


def relations(card: ModelCard, case: Case, maps: dict[str, np.ndarray], withheld: torch.Tensor,
              label: np.ndarray) -> Relations:
    """The relations of one case.

    Args:
        card: the model card.
        case: the loaded case (grids, which modalities were given).
        maps: :func:`effect_maps`' output.
        withheld: (M, T, *S) probabilities with each modality withheld, on the working grid.
        label: the written label map (reference grid) with every given modality.
    """
    voxel_ml = float(np.prod(case.reference.spacing)) / 1000.0
    effects: dict[str, dict[str, object]] = {t: {} for t in card.target_names}
    mass: dict[str, dict[str, float]] = {t: {} for t in card.target_names}
    for j, m in enumerate(card.modality_names):
        if m not in maps:
            for t in card.target_names:
                effects[t][m] = ABSENT
            continue
        label_without = case.label_map(withheld[j].numpy(), card)
        # every target is made of non-zero labels: outside the box of both maps' tumour, nothing to count
        box = nonzero_box((label > 0) | (label_without > 0)) or tuple(slice(0, 0) for _ in label.shape)
        for i, target in enumerate(card.targets):
            with_m, without_m = np.isin(label[box], target.includes), np.isin(label_without[box], target.includes)
            mass[target.name][m] = float(torch.from_numpy(maps[m][i]).abs().sum())
            effects[target.name][m] = {
                "volume_change_ml": round(float(without_m.sum() - with_m.sum()) * voxel_ml, 3),
                "dice_without": round(_dice(with_m, without_m), 4)}
    contributions = {t: _shares(mass[t]) for t in card.target_names}
    for t, shares in contributions.items():
        for m, share in shares.items():
            effects[t][m]["share"] = share
    return Relations(effects=effects, contributions=contributions)


def strongest_effect(per_target: np.ndarray) -> np.ndarray:
    """(T, *S) signed effects -> (*S): at each voxel the effect of largest magnitude, signed."""
    index = np.abs(per_target).argmax(axis=0)
    return np.take_along_axis(per_target, index[None], axis=0)[0]


def _shares(mass: dict[str, float]) -> dict[str, float]:
    total = sum(mass.values())
    return {m: round(v / total, 4) if total > 0 else 0.0 for m, v in mass.items()}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; two empty masks agree fully."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total
