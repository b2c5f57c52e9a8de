"""BraTS 2023's lesion-wise Dice and HD95 of one region (WT, TC or ET) of one case.

The challenge's definition (the BraTS 2023 adult-glioma metrics, ``get_LesionWiseScores`` and
``get_LesionWiseResults``), step by step:

1. the label's lesions: its 26-connected components, merged where they lie close together: the
   label is dilated (:data:`LESION_DILATION` iterations of the 18-connected 3x3x3 structuring
   element), the dilated mask's 26-connected components are found, and each lesion is the label's
   voxels inside one of them;
2. the prediction's 26-connected components;
3. each lesion is matched to every prediction component that overlaps the lesion dilated the
   same way; its Dice and HD95 are those of the lesion against the union of its matched
   components (Dice 0 and HD95 :data:`LESION_WORST_HD95` when none overlaps: a missed lesion);
4. a prediction component matched to no lesion is a false positive: it counts as one more lesion
   with Dice 0 and HD95 :data:`LESION_WORST_HD95`;
5. lesions of at most :data:`LESION_MIN_VOLUME_MM3` are left out of the mean (their matched
   components are not false positives);
6. the score is the mean over the lesions kept and the false positives: Dice
   ``sum(dice) / (lesions + fp)``, HD95 ``(sum(hd95) + 374 fp) / (lesions + fp)``; with neither
   (an empty label and an empty prediction, or only small lesions) Dice 1 and HD95 0.

One deliberate difference: each HD95 is MONAI's (the 95th percentile of each direction's
surface distances, the larger of the two) rather than DeepMind's ``surface_distance`` (surface
elements weighted by area), as the plain HD95 of :mod:`ciml.evaluation.metrics` is; the two
differ by about a voxel on real lesions (measured in ``docs/real-scans.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from ciml.data.geometry import nonzero_box

LESION_DILATION = 3
"""Iterations of the 18-connected dilation that merges nearby lesions and widens the match
(BraTS-GLI, -SSA and -PED: 3; BraTS-MEN and -MET use 1)."""

LESION_MIN_VOLUME_MM3 = 50.0
"""Lesions of at most this volume (mm^3; 50 voxels of BraTS's 1 mm grid) are not scored."""

LESION_WORST_HD95 = 374.0
"""The HD95 of a missed lesion or a false positive (mm), as the challenge scores it."""

_CONNECTED_26 = np.ones((3, 3, 3), dtype=bool)
_DILATION = ndimage.generate_binary_structure(3, 2)


def lesion_wise(prediction: np.ndarray, label: np.ndarray,
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """Lesion-wise Dice and HD95 of one region of one case.

    Args:
        prediction: bool ``(X, Y, Z)`` the predicted region.
        label: bool ``(X, Y, Z)`` the reference region, on the same grid.
        spacing: the grid's voxel size in mm (volumes and HD95).

    Returns:
        ``{"dice", "hd95", "lesions", "found", "missed", "false_positives"}``: the two scores
        (see the module's docstring), the lesions scored (over the volume floor), how many of
        them a prediction component overlaps, how many none does, and the false positives.
    """
    prediction, label = np.asarray(prediction, bool), np.asarray(label, bool)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {prediction.shape} and label {label.shape} differ in shape")
    voxel_mm3 = float(np.prod(spacing))
    components, _ = ndimage.label(prediction, _CONNECTED_26)
    merged, count = ndimage.label(ndimage.binary_dilation(label, _DILATION, LESION_DILATION), _CONNECTED_26)
    lesions = np.where(label, merged, 0)
    matched: set[int] = set()
    dice, hd95, found = [], [], 0
    for index, box in enumerate(ndimage.find_objects(lesions), start=1):
        if box is None:
            continue
        lesion_box = _grown(box, LESION_DILATION, label.shape)
        lesion = lesions[lesion_box] == index
        near = ndimage.binary_dilation(lesion, _DILATION, LESION_DILATION)
        overlapping = np.unique(components[lesion_box][near])
        overlapping = overlapping[overlapping != 0]
        matched.update(overlapping.tolist())
        if lesion.sum() * voxel_mm3 <= LESION_MIN_VOLUME_MM3:
            continue
        if overlapping.size == 0:
            dice.append(0.0)
            hd95.append(LESION_WORST_HD95)
            continue
        found += 1
        region = np.isin(components, overlapping)
        whole_lesion = lesions == index
        dice.append(2.0 * float((region & whole_lesion).sum()) / float(region.sum() + whole_lesion.sum()))
        hd95.append(_hd95(region, whole_lesion, spacing))
    false_positives = int(components.max()) - len(matched) if components.size else 0
    scored = len(dice) + false_positives
    return {
        "dice": float(sum(dice) / scored) if scored else 1.0,
        "hd95": float((sum(hd95) + LESION_WORST_HD95 * false_positives) / scored) if scored else 0.0,
        "lesions": len(dice), "found": found, "missed": len(dice) - found,
        "false_positives": false_positives,
    }


def _grown(box: tuple[slice, ...], margin: int, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def _hd95(prediction: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """MONAI's HD95 of two non-empty masks, on the box around both (with a margin, so that no
    surface lies on the box's edge)."""
    box = nonzero_box(prediction | label)
    box = _grown(box, 2, label.shape)
    pred = torch.from_numpy(np.ascontiguousarray(prediction[box]))[None, None]
    true = torch.from_numpy(np.ascontiguousarray(label[box]))[None, None]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        value = compute_hausdorff_distance(pred, true, percentile=95, spacing=list(spacing))
    return float(value[0, 0])
