"""Dice and HD95 per target, with MONAI metrics and the BraTS challenge's rules for empty masks.

Rules (as the BraTS challenge scores them):
- label empty and prediction empty: Dice 1, HD95 0 (a correct "nothing here");
- exactly one of them empty: Dice 0, HD95 = :data:`WORST_HD95` mm;
- otherwise MONAI's ``DiceMetric`` and ``HausdorffDistanceMetric(percentile=95)`` with the
  image spacing, so HD95 is in millimetres.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric

# The BraTS worst case: the diagonal of the 240 x 240 x 155 mm BraTS volume.
WORST_HD95 = float(np.sqrt(240.0**2 + 240.0**2 + 155.0**2))


def region_metrics(prediction: torch.Tensor, label: torch.Tensor, target_names: Sequence[str],
                   spacing: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Dice and HD95 of one case, per target.

    Args:
        prediction, label: (T, *S) binary region masks, one channel per target.
        target_names: the T target names.
        spacing: voxel spacing in mm (for HD95); 1 mm when omitted.

    Returns:
        ``{"dice": {target: value}, "hd95": {target: value}}``.
    """

    # MONAI 1.5+ warns about its own internal use of a deprecated argument on every call.
    warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)

    pred = (prediction > 0).float().unsqueeze(0)
    true = (label > 0).float().unsqueeze(0)
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(pred, true)[0]
    hd_metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
    out: dict[str, dict[str, float]] = {"dice": {}, "hd95": {}}
    for i, name in enumerate(target_names):
        p_empty, t_empty = not bool(pred[0, i].any()), not bool(true[0, i].any())
        if p_empty and t_empty:
            hd = 0.0
        elif p_empty or t_empty:
            hd = WORST_HD95
        else:
            hd = float(hd_metric(pred[:, i:i + 1], true[:, i:i + 1],
                                 spacing=list(spacing) if spacing is not None else None)[0, 0])
        out["dice"][name] = float(dice[i])
        out["hd95"][name] = hd
    return out


def mean_metrics(per_case: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean over cases of each metric and target."""
    if not per_case:
        return {}
    return {metric: {t: float(np.mean([c[metric][t] for c in per_case])) for t in per_case[0][metric]}
            for metric in per_case[0]}
