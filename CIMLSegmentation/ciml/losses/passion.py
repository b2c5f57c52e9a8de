"""PASSION: preference-aware self-distillation for training with imbalanced missing modalities.

Shi et al., "PASSION: Towards Effective Incomplete Multi-Modal Medical Image Segmentation with
Imbalanced Missing Rates", ACM MM 2024 (arXiv 2407.14796). The multimodal prediction teaches
each modality's unimodal prediction, pixel by pixel and through class prototypes; modalities
that lag behind the others get more weight, and rarely present modalities are up-weighted.
This module follows the authors' public code (github.com/Jun-Jie-Shi/PASSION), adapted to this
project's sigmoid multi-label targets and CIML's outputs; ``docs/training-methods.md`` lists
every formula and what is the project's own interpretation.

The supervised terms (the multimodal Dice + BCE and the unimodal heads' Dice + BCE) stay in
:class:`ciml.losses.CIMLLoss`; :class:`PassionLoss` adds only the distillation terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ciml.config import ModelCard
from ciml.data.missing import presence_frequencies
from ciml.nn.output import NetOutput

_EPS = 1e-5


@dataclass
class PassionTerms:
    """What one :class:`PassionLoss` call returns (per-modality values for logging).

    Attributes:
        total: () what is back-propagated (add it to :class:`ciml.losses.CIMLLoss`'s total).
        pixel: modality -> () pixel-wise distillation, mean over the samples having it.
        prototype: modality -> () prototype distillation, mean over the samples having it and
            at least one target present.
        weights: modality -> inverse-frequency weight times relative-preference coefficient,
            the weight of its pixel term (also usable for its unimodal Dice + BCE).
        preference: modality -> this batch's relative preference (> 0: lagging).
        lagging: modalities whose prototype term counts in this batch (preference > 0).
    """

    total: torch.Tensor
    pixel: dict[str, torch.Tensor] = field(default_factory=dict)
    prototype: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    preference: dict[str, float] = field(default_factory=dict)
    lagging: tuple[str, ...] = ()


def inverse_frequency_weights(modality_names: Sequence[str],
                              missing_rates: Mapping[str, float]) -> np.ndarray:
    """(M,) weights proportional to 1 / presence frequency, normalised to mean 1.

    A modality never present (missing rate 1) gets weight 0 and is left out of the mean.
    Example: rates ``{a: 0, b: 0.5}`` give raw weights 1 and 2, normalised 2/3 and 4/3.
    """
    freq = presence_frequencies(modality_names, missing_rates)
    seen = freq > 0
    raw = np.where(seen, 1.0 / np.where(seen, freq, 1.0), 0.0)
    return raw / raw[seen].mean()


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              temperature: float = 1.0) -> torch.Tensor:
    """Per-element ``T^2 KL(Bern(sigmoid(t / T)) || Bern(sigmoid(s / T)))``, any shape.

    The sigmoid counterpart of Hinton's softened-softmax KL: each target channel is an
    independent Bernoulli. Log-sigmoids keep it finite for large logits.
    """
    zs, zt = student_logits / temperature, teacher_logits / temperature
    pt = torch.sigmoid(zt)
    kl = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    return temperature * temperature * kl


def similarity_maps(features: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every voxel's feature to the region's and background's prototype.

    Args:
        features: (B, C, *S') features.
        inside: (B, *S') soft region mask in [0, 1] on the feature grid.

    Returns:
        (B, 2, *S'): similarity to the inside prototype, then to the outside prototype; each
        prototype is the mask-weighted mean feature.
    """
    maps = []
    for weight in (inside, 1 - inside):
        w = weight.unsqueeze(1)
        dims = tuple(range(2, features.dim()))
        proto = (features * w).sum(dims, keepdim=True) / (w.sum(dims, keepdim=True) + _EPS)
        maps.append(F.cosine_similarity(features, proto, dim=1, eps=_EPS))
    return torch.stack(maps, dim=1)


class PassionLoss(nn.Module):
    """Pixel-wise and prototype self-distillation, weighted by relative preference and rarity.

    For a batch with present (B, M), modality m over the samples b that have it:

    - pixel_m: mean over targets and voxels of ``binary_kl(branch_logits[m], logits.detach())``;
    - prototype_m: mean over targets present in b (and not filling the patch) of the squared
      difference of :func:`similarity_maps` from ``encoder_features[m]`` (student) and from
      the fused features of the target's sub-task (teacher, detached), the target mask
      area-downsampled to the deepest feature grid;
    - relative preference rp_m = sum_b (d_bm / mean_{m' in b} d_bm' - 1) with d_bm the
      detached mean absolute map difference (the pixel KL where b has no usable target):
      rp_m > 0 means m is further from the teacher than the average modality, i.e. lagging;
    - preference coefficient beta_m (a buffer, 1 at start): in training mode after each call
      ``beta_m <- clip(beta_m + preference_rate * mean_b rp_bm, 0.1, 4)``, rescaled to root
      mean square 1, so that persistently lagging modalities gain weight;
    - inverse-frequency weight f_m (:func:`inverse_frequency_weights` of
      ``card.training.missing_rates``).

    ``total = distill_weight * sum_m f_m beta_m pixel_m / M
    + prototype_weight * sum_m f_m [rp_m > 0] prototype_m / M``.

    Args:
        card: gives the modalities, the sub-task of each target, ``training.distill_weight``,
            ``training.prototype_weight`` and ``training.missing_rates``.
        temperature: distillation temperature T (4, the default of the authors' code).
        preference_rate: step size of the preference coefficients per call (0 freezes them).
        preference_bounds: clip range of the coefficients before rescaling.

    Shapes: ``forward(output, regions (B, T, *S) in {0, 1}, present (B, M) bool)``; ``output``
    must carry ``branch_logits`` (``network.modality_heads``), ``encoder_features`` and
    ``fused_features``. The buffers (``preference``) belong in training checkpoints.
    """

    def __init__(self, card: ModelCard, temperature: float = 4.0, preference_rate: float = 1e-3,
                 preference_bounds: tuple[float, float] = (0.1, 4.0)):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.modality_names = card.modality_names
        self.distill_weight = card.training.distill_weight
        self.prototype_weight = card.training.prototype_weight
        self.temperature = temperature
        self.preference_rate = preference_rate
        self.preference_bounds = preference_bounds
        # Sub-task whose fused features are the teacher for each target channel.
        owner = {t: s.name for s in card.subtasks for t in s.targets}
        self.target_subtask = [owner[t] for t in card.target_names]
        weights = inverse_frequency_weights(card.modality_names, card.training.missing_rates)
        self.register_buffer("inverse_frequency", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("preference", torch.ones(len(card.modalities)))

    def pixel_terms(self, output: NetOutput, present: torch.Tensor) -> torch.Tensor:
        """(B, M) per-sample pixel distillation (zero where the modality is absent)."""
        teacher = output.logits.detach()
        cols = []
        for i, m in enumerate(self.modality_names):
            if m not in output.branch_logits:
                cols.append(teacher.new_zeros(teacher.shape[0]))
                continue
            kl = binary_kl(output.branch_logits[m], teacher, self.temperature).flatten(1).mean(1)
            cols.append(torch.where(present[:, i], kl, torch.zeros_like(kl)))
        return torch.stack(cols, dim=1)

    def prototype_terms(self, output: NetOutput, regions: torch.Tensor,
                        present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample prototype distillation.

        Returns:
            loss (B, M) mean squared map difference, dist (B, M) detached mean absolute map
            difference, usable (B,) whether the sample has a target to build prototypes from.
        """
        grid = next(iter(output.fused_features.values())).shape[2:]
        inside = F.interpolate(regions, size=grid, mode="area")  # fraction of each cell inside
        has_in = regions.flatten(2).amax(2) > 0
        has_out = regions.flatten(2).amin(2) < 1
        valid = (has_in & has_out).to(regions.dtype)  # (B, T): both prototypes defined
        count = valid.sum(1)
        teacher = {}
        for t, s in enumerate(self.target_subtask):
            teacher[t] = similarity_maps(output.fused_features[s].detach(), inside[:, t])
        loss_cols, dist_cols = [], []
        for i, m in enumerate(self.modality_names):
            if m not in output.branch_logits:
                loss_cols.append(regions.new_zeros(regions.shape[0]))
                dist_cols.append(regions.new_zeros(regions.shape[0]))
                continue
            feats = output.encoder_features[m]
            if feats.shape[2:] != grid:
                raise ValueError(f"encoder features of {m} are on grid {tuple(feats.shape[2:])}, "
                                 f"fused features on {tuple(grid)}")
            loss = feats.new_zeros(feats.shape[0])
            dist = feats.new_zeros(feats.shape[0])
            for t in teacher:
                diff = similarity_maps(feats, inside[:, t]) - teacher[t]
                loss = loss + valid[:, t] * diff.pow(2).flatten(1).mean(1)
                dist = dist + valid[:, t] * diff.detach().abs().flatten(1).mean(1)
            keep = present[:, i] & (count > 0)
            denom = count.clamp(min=1)
            loss_cols.append(torch.where(keep, loss / denom, torch.zeros_like(loss)))
            dist_cols.append(torch.where(keep, dist / denom, torch.zeros_like(dist)))
        return torch.stack(loss_cols, 1), torch.stack(dist_cols, 1), count > 0

    def relative_preference(self, distance: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, M) per-sample rp_bm = d_bm / mean of d_b over present modalities - 1 (0 if absent)."""
        d = torch.where(present, distance, torch.zeros_like(distance))
        mean = d.sum(1, keepdim=True) / present.sum(1, keepdim=True).clamp(min=1)
        rp = torch.where(mean > 0, d / mean.clamp(min=1e-12) - 1, torch.zeros_like(d))
        return torch.where(present, rp, torch.zeros_like(rp))

    @torch.no_grad()
    def update_preference(self, rp: torch.Tensor, present: torch.Tensor) -> None:
        """Move the coefficients along the batch's mean relative preference (modalities seen)."""
        seen = present.sum(0)
        step = torch.where(seen > 0, rp.sum(0) / seen.clamp(min=1), torch.zeros_like(self.preference))
        beta = (self.preference + self.preference_rate * step).clamp(*self.preference_bounds)
        self.preference.copy_(beta / beta.pow(2).mean().sqrt())

    def forward(self, output: NetOutput, regions: torch.Tensor, present: torch.Tensor) -> PassionTerms:
        if not output.branch_logits:
            raise ValueError("PASSION needs the unimodal outputs: set network.modality_heads")
        # A modality no sub-task uses has no encoder, hence no unimodal output: treat as absent.
        has_head = torch.tensor([m in output.branch_logits for m in self.modality_names],
                                device=output.logits.device)
        present = present.to(device=output.logits.device, dtype=torch.bool) & has_head
        regions = regions.to(output.logits.dtype)
        pixel = self.pixel_terms(output, present)
        proto, dist, usable = self.prototype_terms(output, regions, present)
        # Preference from the prototype distance (as PASSION), from the pixel KL without targets.
        distance = torch.where(usable[:, None], dist, pixel.detach())
        rp_per_sample = self.relative_preference(distance, present)
        rp = rp_per_sample.sum(0)
        lagging = rp > 0

        seen = present.sum(0).clamp(min=1).to(pixel.dtype)
        proto_seen = (present & usable[:, None]).sum(0).clamp(min=1).to(pixel.dtype)
        pixel_m = pixel.sum(0) / seen
        proto_m = proto.sum(0) / proto_seen
        weights = self.inverse_frequency * self.preference
        n = len(self.modality_names)
        total = (self.distill_weight * (weights * pixel_m).sum() / n
                 + self.prototype_weight * (self.inverse_frequency * lagging * proto_m).sum() / n)
        if self.training and self.preference_rate > 0:
            self.update_preference(rp_per_sample, present)
        names = self.modality_names
        return PassionTerms(
            total=total,
            pixel={m: pixel_m[i] for i, m in enumerate(names)},
            prototype={m: proto_m[i] for i, m in enumerate(names)},
            weights={m: float(weights[i]) for i, m in enumerate(names)},
            preference={m: float(rp[i]) for i, m in enumerate(names)},
            lagging=tuple(m for i, m in enumerate(names) if lagging[i]))
