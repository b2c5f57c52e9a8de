"""Comparing segmentations: the Dice of the old and the new model's results against the current
(corrected) segmentation, per target, for the panel's comparison table after fine-tuning.

Plain Python on numpy (which Slicer ships; the rest of the plain half needs none), tested
outside Slicer; masks are arrays of one shape, as ``slicer.util.arrayFromSegmentBinaryLabelmap``
gives them on one reference volume.
"""

from typing import List, Mapping, Optional, Sequence

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Dice of two masks; None when both are empty (nothing to agree on)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_table(reference: Mapping[str, np.ndarray], others: Mapping[str, Mapping[str, np.ndarray]],
               targets: Sequence[str]) -> List[List[str]]:
    """Rows [target, Dice of each of ``others`` against ``reference``] as text ('-' where both
    masks are empty or the target is missing), for the panel's comparison table.

    Args:
        reference: {target: mask} of the current (corrected) segmentation.
        others: {column title: {target: mask}}, e.g. the old and the new model's results.
        targets: the rows, in card order.
    """
    rows = []
    for target in targets:
        row = [target]
        for masks in others.values():
            value = dice(reference[target], masks[target]) if target in reference and target in masks else None
            row.append("-" if value is None else f"{value:.3f}")
        rows.append(row)
    return rows
