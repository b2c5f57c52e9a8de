"""DTC: semi-supervised segmentation through dual-task consistency.

Luo et al., "Semi-supervised Medical Image Segmentation through Dual-task Consistency",
AAAI 2021 (code: github.com/HiLab-git/DTC). Besides its segmentation logits, the network
regresses each target's normalised signed distance map (the level set, a tanh head). On
labelled cases the level set is regressed to the label's signed distance; on every case,
labelled or not, the segmentation must agree with the level set turned into a mask by
``sigmoid(-k * level_set)``. The supervised Dice + BCE stays in :class:`ciml.losses.CIMLLoss`
(labelled cases only); :class:`DTCLoss` adds the two DTC terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ciml.config import ModelCard
from ciml.nn.output import NetOutput


def _region_sdf(region: np.ndarray) -> np.ndarray:
    """DTC's ``compute_sdf`` for one binary region: inside in [-1, 0), outside in (0, 1], 0 on
    the inner boundary; zeros for an empty region, -1 for a region filling the patch."""
    inside = region.astype(bool)
    if not inside.any():
        return np.zeros(region.shape, dtype=np.float32)
    if inside.all():
        return np.full(region.shape, -1.0, dtype=np.float32)
    to_outside = ndimage.distance_transform_edt(inside)  # inside: distance to the background
    to_inside = ndimage.distance_transform_edt(~inside)  # outside: distance to the region

    def scaled(d: np.ndarray) -> np.ndarray:
        return (d - d.min()) / max(d.max() - d.min(), 1e-12)

    sdf = scaled(to_inside) - scaled(to_outside)
    # Inner boundary (skimage's find_boundaries(mode="inner")): region voxels with a face
    # neighbour outside. The patch border is not a boundary (border_value=1).
    face = ndimage.generate_binary_structure(region.ndim, 1)
    boundary = inside & ~ndimage.binary_erosion(inside, structure=face, border_value=1)
    sdf[boundary] = 0.0
    return sdf.astype(np.float32)


def signed_distance(regions: Any) -> Any:
    """Normalised signed distance map of every region channel, as DTC's ``compute_sdf``.

    Per (sample, target): ``sdf = norm(dist to region) - norm(dist to background)`` with
    ``norm`` min-max scaling to [0, 1] over the patch, set to 0 on the region's inner
    boundary; so negative inside, positive outside, in [-1, 1]. An empty region gives zeros
    (DTC's convention) and a region filling the whole patch gives -1.

    Args:
        regions: (B, T, *S) binary numpy array or torch tensor (any device).

    Returns:
        (B, T, *S) float32, numpy for numpy input, a tensor on the input's device otherwise.
        Computed on the CPU with ``scipy.ndimage.distance_transform_edt``.
    """
    is_tensor = isinstance(regions, torch.Tensor)
    array = regions.detach().cpu().numpy() if is_tensor else np.asarray(regions)
    if array.ndim < 3:
        raise ValueError(f"expected (B, T, *S) regions, got shape {array.shape}")
    out = np.empty(array.shape, dtype=np.float32)
    for b in range(array.shape[0]):
        for t in range(array.shape[1]):
            out[b, t] = _region_sdf(array[b, t] > 0.5)
    return torch.from_numpy(out).to(regions.device) if is_tensor else out


def sigmoid_rampup(step: int, ramp_steps: int) -> float:
    """DTC's (and the mean teacher's) ramp ``exp(-5 (1 - t)^2)``, ``t = min(step / ramp_steps, 1)``.

    0.0067 at step 0, 1 from ``ramp_steps`` on; ``ramp_steps`` 0 gives 1 at once.
    """
    if ramp_steps <= 0:
        return 1.0
    t = min(max(step, 0) / ramp_steps, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@dataclass
class DTCTerms:
    """What one :class:`DTCLoss` call returns.

    Attributes:
        total: () what is back-propagated (add it to the supervised loss of the labelled cases).
        level_set: () MSE of the level set against the labels' signed distance, ``None`` when
            the batch has no labelled case.
        consistency: () MSE between sigmoid(logits) and sigmoid(-k * level set), all cases.
        consistency_weight: the ramped weight used for ``consistency`` at this step.
    """

    total: torch.Tensor
    level_set: torch.Tensor | None
    consistency: torch.Tensor
    consistency_weight: float


class DTCLoss(nn.Module):
    """``level_set_weight * MSE(level_set, sdf(label))`` on the labelled cases plus
    ``w(step) * MSE(sigmoid(logits), sigmoid(-k * level_set))`` on all cases, with
    ``w(step) = consistency_weight * sigmoid_rampup(step, consistency_ramp_steps)``.

    As in DTC, the consistency term is not detached on either side: it trains both heads, and
    it is one mean over the whole batch, labelled and unlabelled cases together (DTC's
    ``train_la_dtc.py``): call it once on a mixed batch with ``labelled``, not once per part,
    which would count the consistency twice.

    Args:
        card: ``training.dtc``'s ``level_set_weight``, ``consistency_weight``,
            ``consistency_ramp_steps`` and ``level_set_k``.

    Shapes: ``forward(output with logits and level_set (B, T, *S), regions, step)``;
    ``labelled`` (B,) bool selects the labelled cases of a mixed batch; ``regions`` and ``sdf``
    are (B, T, *S) (the unlabelled rows are ignored) or (n, T, *S) for the n labelled rows only,
    in order, or ``None`` (no labelled case); ``sdf`` gives precomputed signed distances.
    """

    def __init__(self, card: ModelCard):
        super().__init__()
        spec = card.training.dtc
        self.level_set_weight = spec.level_set_weight
        self.consistency_weight = spec.consistency_weight
        self.ramp_steps = spec.consistency_ramp_steps
        self.k = spec.level_set_k

    def ramp(self, step: int) -> float:
        """The consistency weight at ``step``."""
        return self.consistency_weight * sigmoid_rampup(step, self.ramp_steps)

    def consistency(self, logits: torch.Tensor, level_set: torch.Tensor) -> torch.Tensor:
        """() mean of ``(sigmoid(logits) - sigmoid(-k * level_set))^2``."""
        return (torch.sigmoid(logits) - torch.sigmoid(-self.k * level_set)).pow(2).mean()

    def forward(self, output: NetOutput, regions: torch.Tensor | None, step: int,
                labelled: torch.Tensor | None = None, sdf: torch.Tensor | None = None) -> DTCTerms:
        """The DTC terms of a batch.

        Args:
            output: the network's output for B samples, with ``level_set`` (B, T, *S).
            regions: the labelled samples' (B, T, *S) or (n, T, *S) binary regions, or ``None``.
            step: the optimiser step (the consistency ramp).
            labelled: (B,) bool, the labelled samples; ``None``: all of them.
            sdf: precomputed signed distances, shaped as ``regions``.
        """
        if output.level_set is None:
            raise ValueError("DTC needs the level-set head: set network.level_set_head")
        level_set = output.level_set
        consistency = self.consistency(output.logits, level_set)
        weight = self.ramp(step)
        total = weight * consistency
        regression = None
        if regions is not None:
            rows = (torch.ones(level_set.shape[0], dtype=torch.bool, device=level_set.device)
                    if labelled is None else labelled.to(device=level_set.device, dtype=torch.bool))
            if rows.any():
                target = signed_distance(_labelled_rows(regions, rows)) if sdf is None else _labelled_rows(sdf, rows)
                target = target.to(device=level_set.device, dtype=level_set.dtype)
                regression = (level_set[rows] - target).pow(2).mean()
                total = total + self.level_set_weight * regression
        return DTCTerms(total=total, level_set=regression, consistency=consistency, consistency_weight=weight)


def _labelled_rows(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The labelled rows of (B, ...) ``values`` selected by (B,) bool ``rows``, or ``values``
    itself when it holds only those rows already ((n, ...), n = rows.sum())."""
    if values.shape[0] == rows.shape[0]:
        return values[rows.to(values.device)]
    if values.shape[0] == int(rows.sum()):
        return values
    raise ValueError(f"expected {rows.shape[0]} or {int(rows.sum())} rows (the batch or its labelled "
                     f"cases), got {values.shape[0]}")
