"""PASSION: preference-aware self-distillation for training with imbalanced missing modalities.

Shi et al., "PASSION: Towards Effective Incomplete Multi-Modal Medical Image Segmentation with
Imbalanced Missing Rates", ACM MM 2024 (arXiv 2407.14796), rebuilt after the authors' code
(github.com/Jun-Jie-Shi/PASSION: ``code/utils/criterions.py``, ``code/train.py``,
``code/models/rfnet.py``). The network run with all of a case's modalities is the teacher; the
same network run with one modality only (:mod:`ciml.losses.passion_students`) is that
modality's student. Each student learns from the teacher pixel by pixel (temperature KL) and
through class prototypes of the last decoder features; the relative preference finds the
lagging modalities, whose unimodal and prototype losses alone count (task-wise
regularisation), and per-modality coefficients times inverse presence frequencies weight the
distillation and unimodal losses (gradient-wise regularisation,
:class:`~ciml.losses.passion_schedule.PreferenceSchedule`). ``docs/training-methods.md`` lists
the formulas and every difference from the authors' code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ciml.config import ModelCard
from ciml.data.missing import presence_frequencies
from ciml.losses.passion_schedule import PreferenceSchedule
from ciml.losses.passion_students import StudentPass
from ciml.losses.segmentation import CIMLLoss
from ciml.nn.output import NetOutput

# The authors' epsilon in the prototypes' masked means and the cosine similarity.
PROTOTYPE_EPS = 1e-5


@dataclass
class PassionTerms:
    """What one :class:`PassionLoss` call returns (per-modality values for logging).

    Attributes:
        total: () what is back-propagated (add it to the supervised loss of the fused output).
        distillation: modality -> () pixel-wise KL of its student, averaged over the batch
            (zero for the samples without the modality).
        prototype: modality -> () prototype loss of its student, averaged likewise.
        unimodal: modality -> () supervised loss of its unimodal output
            (``NetOutput.branch_logits``), averaged likewise; absent when the network has none.
        preference: modality -> this step's relative preference (> 0: lagging).
        lagging: the modalities whose unimodal and prototype losses count this step.
        weights: modality -> preference coefficient times inverse-frequency weight.
        warming_up: whether this step is in the warm-up (no students, no masking).
    """

    total: torch.Tensor
    distillation: dict[str, torch.Tensor] = field(default_factory=dict)
    prototype: dict[str, torch.Tensor] = field(default_factory=dict)
    unimodal: dict[str, torch.Tensor] = field(default_factory=dict)
    preference: dict[str, float] = field(default_factory=dict)
    lagging: tuple[str, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    warming_up: bool = False


def inverse_frequency_weights(modality_names: Sequence[str],
                              missing_rates: Mapping[str, float]) -> np.ndarray:
    """(M,) weights ``1 / P(modality present)``, 0 for a modality never present.

    The authors' ``modal_weight`` (iterations per epoch / training cases with the modality, i.e.
    1 / presence frequency at their batch size 1), not normalised: with the per-batch sums of
    :class:`PassionLoss`, every modality then weighs the same on average however often it is
    present. Example: rates ``{a: 0, b: 0.5}`` give 1 and 2.
    """
    freq = presence_frequencies(modality_names, missing_rates)
    seen = freq > 0
    return np.where(seen, 1.0 / np.where(seen, freq, 1.0), 0.0)


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              temperature: float = 1.0) -> torch.Tensor:
    """Per-element ``T^2 KL(Bern(sigmoid(t / T)) || Bern(sigmoid(s / T))) / 2``.

    The sigmoid counterpart of the authors' ``temp_kl_loss``, which takes ``torch.mean`` of the
    softmax KL's terms over the class axis as well as the voxels: a sigmoid channel is a softmax
    over two classes (``[0, z]``), so its KL's two terms are averaged, not summed. Log-sigmoids
    keep it exact and finite, where the authors clamp probabilities at 0.005.

    Args:
        student_logits: (B, T, *S) logits, any shape.
        teacher_logits: the teacher's logits, same shape (detach them first).
        temperature: T > 0, softens both distributions.

    Returns:
        Half the KL per element, same shape.
    """
    zs, zt = student_logits / temperature, teacher_logits / temperature
    pt = torch.sigmoid(zt)
    logs = torch.nn.functional.logsigmoid
    kl = pt * (logs(zt) - logs(zs)) + (1 - pt) * (logs(-zt) - logs(-zs))
    return temperature * temperature * kl / 2  # the mean over the two classes, as the authors


def class_masks(regions: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """The classes whose prototypes a decoder's features are compared on: background first.

    Args:
        regions: (B, T, *S) binary target regions (targets may nest).
        channels: the target channels the decoder predicts.

    Returns:
        (B, 1 + len(channels), *S): the voxels outside all these targets (the authors'
        background class), then each target's region.
    """
    targets = regions[:, list(channels)]
    background = 1 - targets.amax(dim=1, keepdim=True)
    return torch.cat([background, targets], dim=1)


def similarity_maps(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every voxel's feature to each class prototype.

    A prototype is the masked mean feature ``sum(f * mask) / (sum(mask) + eps)`` (eps 1e-5 as
    the authors'); the similarity is ``f . p / (max(|f|, eps) max(|p|, eps))``, which is
    ``torch.nn.functional.cosine_similarity``, computed without a (B, K, C, *S) product.

    Args:
        features: (B, C, *S) features.
        masks: (B, K, *S) class masks in [0, 1] on the same grid.

    Returns:
        (B, K, *S) similarity maps in [-1, 1].
    """
    f, w = features.flatten(2), masks.to(features.dtype).flatten(2)  # (B, C, N), (B, K, N)
    prototypes = torch.einsum("bcn,bkn->bkc", f, w) / (w.sum(2, keepdim=True) + PROTOTYPE_EPS)
    dot = torch.einsum("bcn,bkc->bkn", f, prototypes)
    norms = f.norm(dim=1).clamp(min=PROTOTYPE_EPS)[:, None] * prototypes.norm(dim=2).clamp(min=PROTOTYPE_EPS)[..., None]
    return (dot / norms).reshape(masks.shape)


def prototype_distillation(groups: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The authors' ``prototype_passion_loss``, per sample, over one or more decoders.

    For every class with voxels in the sample, the student's and the teacher's similarity maps
    (:func:`similarity_maps`, each to its own prototypes) are compared voxel by voxel.

    Args:
        groups: per decoder, (student features (B, C, *S), teacher features (B, C, *S), class
            masks (B, K, *S)); the teacher features are detached here.

    Returns:
        loss (B,): mean over the sample's classes and voxels of the squared map difference;
        distance (B,): the same mean of the absolute difference, detached (the relative
        preference's distance); usable (B,) bool: the sample has a class to compare on (loss and
        distance are 0 where not).
    """
    squared, absolute, valid = [], [], []
    for student, teacher, masks in groups:
        diff = (similarity_maps(student, masks) - similarity_maps(teacher.detach(), masks)).flatten(2)
        squared.append(diff.pow(2).mean(2))
        absolute.append(diff.detach().abs().mean(2))
        valid.append(masks.flatten(2).amax(2) > 0)  # the authors skip a class absent from the label
    sq, ab, ok = torch.cat(squared, 1), torch.cat(absolute, 1), torch.cat(valid, 1).to(squared[0].dtype)
    count = ok.sum(1)
    return (sq * ok).sum(1) / count.clamp(min=1), (ab * ok).sum(1) / count.clamp(min=1), count > 0


def relative_preference(distance: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """The authors' per-step relative preference: ``rp_m = sum_b (d_bm / mean_m' d_bm' - 1)``.

    Args:
        distance: (B, M) each student's prototype distance to the teacher.
        counted: (B, M) bool, where the distance exists (modality present, sample usable).

    Returns:
        (M,) relative preference; > 0: the modality is further from the teacher than the
        average of the sample's modalities, i.e. lagging. Samples whose distances are all 0
        add nothing (the authors' 0/0).
    """
    d = torch.where(counted, distance, torch.zeros_like(distance))
    mean = d.sum(1, keepdim=True) / counted.sum(1, keepdim=True).clamp(min=1)
    ok = counted & (mean > 0)
    ratio = torch.where(ok, d / torch.where(mean > 0, mean, torch.ones_like(mean)) - 1, torch.zeros_like(d))
    return ratio.sum(0)


def _zero_from(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """() a zero that depends on ``tensors``, NaNs included: DDP needs every parameter of the
    network in the loss's graph, also a head whose modality no sample of this process has."""
    return sum(t.float().sum().nan_to_num() for t in tensors) * 0.0


def _scatter(values: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor:
    """(n,) values of the rows ``rows`` (B,) bool -> (B,), zero elsewhere (keeps the graph)."""
    return values.new_zeros(batch).index_copy(0, rows.nonzero().flatten(), values)


class PassionLoss(nn.Module):
    """The PASSION terms of one training step, given the teacher and the students.

    With B labelled samples, ``p_bm`` = sample b has modality m, ``w_m`` the inverse presence
    frequency (:func:`inverse_frequency_weights`), ``beta_m`` the preference coefficient and
    ``lag_m`` = relative preference > 0 (both from the schedule and this step):

    ``total = distill_weight * sum_m beta_m w_m kl_m + prototype_weight * sum_m lag_m w_m proto_m
    + deep_supervision_weight * sum_m lag_m beta_m w_m uni_m``, where ``x_m = (1/B) sum_b p_bm
    x_bm`` (the authors' per-batch sums; B normalises like the batch-mean supervised loss):
    ``kl_bm`` the mean over targets and voxels of :func:`binary_kl` of student m against the
    detached teacher logits (the authors' mean over classes and voxels), ``proto_bm`` the :func:`prototype_distillation` on the decoder features, ``uni_bm`` the
    supervised loss of the network's unimodal output ``branch_logits[m]`` (:meth:`unimodal_loss`;
    the authors' separate decoder; networks without one have no such term).

    During the warm-up epochs only the unimodal term counts, unmasked (the authors'
    ``region_fusion_start_epoch``); the students are not needed then.

    Args:
        card: the modalities, the sub-tasks' targets, ``training.missing_rates``,
            ``deep_supervision_weight`` and ``training.passion``'s ``distill_weight``,
            ``prototype_weight``, ``temperature``, ``warmup_epochs`` and ``preference_rate``.
        epoch_steps: optimiser steps per epoch of the preference schedule.
        reduce: sums a tensor over the DDP processes (identity by default), so that the
            relative preference and the schedule's statistics are those of the global batch.

    Shapes: ``forward(teacher NetOutput (B, T, *S) with decoder_features, students
    {modality: StudentPass}, regions (B, T, *S), present (B, M), step)``.
    """

    def __init__(self, card: ModelCard, epoch_steps: int,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        t, p = card.training, card.training.passion
        self.modality_names = card.modality_names
        self.distill_weight, self.prototype_weight = p.distill_weight, p.prototype_weight
        self.unimodal_weight = t.deep_supervision_weight
        self.temperature = p.temperature
        self.reduce = reduce if reduce is not None else (lambda x: x)
        self.subtask_channels = {s.name: [card.target_index(x) for x in s.targets] for s in card.subtasks}
        self.schedule = PreferenceSchedule(len(card.modalities), epoch_steps, p.warmup_epochs,
                                           p.preference_rate, self.reduce)
        weights = inverse_frequency_weights(card.modality_names, t.missing_rates)
        self.register_buffer("inverse_frequency", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.supervised = CIMLLoss(card)  # its per-sample Dice + BCE for the unimodal outputs

    def decoder_groups(self, output: NetOutput) -> list[tuple[str, list[int]]]:
        """Sub-tasks sharing one decoder-feature tensor, as (a sub-task, all their channels)."""
        if not output.decoder_features:
            raise ValueError("PASSION's prototypes need NetOutput.decoder_features from the network")
        groups: dict[int, tuple[str, list[int]]] = {}
        for name, channels in self.subtask_channels.items():
            key = id(output.decoder_features[name])
            groups.setdefault(key, (name, []))[1].extend(channels)
        return list(groups.values())

    def unimodal_loss(self, output: NetOutput, modality: str, regions: torch.Tensor) -> torch.Tensor:
        """() one sample's unimodal loss, weighed as :class:`CIMLLoss` weighs a branch: Dice + BCE
        of ``branch_logits[modality]``, or for multi-scale branches (``branch_scales``, MAML) the
        deep supervision over the scales divided by its full-resolution weight.

        Args:
            output: the network's output for that one sample (B = 1).
            modality: a modality with a unimodal output.
            regions: (1, T, *S) the sample's regions.
        """
        scales = output.branch_scales.get(modality)
        if scales:
            return (self.supervised.deep_supervision([s.float() for s in scales], regions)
                    / self.supervised.scale_weights[0])
        return self.supervised.segmentation(output.branch_logits[modality].float(), regions)

    def unimodal_terms(self, output: NetOutput, regions: torch.Tensor,
                       present: torch.Tensor) -> dict[int, torch.Tensor]:
        """Modality index -> (B,) each sample's :meth:`unimodal_loss` (0 where absent), for the
        modalities with a unimodal output (``branch_logits``)."""
        terms = {}
        for i, m in enumerate(self.modality_names):
            if m not in output.branch_logits:
                continue
            per_sample = []
            for b in range(regions.shape[0]):
                if not present[b, i]:
                    unused = [output.branch_logits[m][b], *(s[b] for s in output.branch_scales.get(m, []))]
                    per_sample.append(_zero_from(unused))
                    continue
                one = replace(output, branch_logits={m: output.branch_logits[m][b:b + 1]},
                              branch_scales={m: [s[b:b + 1] for s in output.branch_scales.get(m, [])]})
                per_sample.append(self.unimodal_loss(one, m, regions[b:b + 1]))
            terms[i] = torch.stack(per_sample)
        return terms

    def student_terms(self, teacher: NetOutput, students: Mapping[str, StudentPass], regions: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, M) KL, prototype loss, distance, usable and ran, from the students that ran."""
        batch, n = regions.shape[0], len(self.modality_names)
        zero = teacher.logits.new_zeros(batch, dtype=torch.float32)
        kl, proto, dist = [zero] * n, [zero] * n, [zero] * n
        usable, ran = [zero.bool()] * n, [zero.bool()] * n
        groups = self.decoder_groups(teacher)
        for m, student in students.items():
            i, rows = self.modality_names.index(m), student.rows.to(regions.device)
            pixel = binary_kl(student.output.logits.float(), teacher.logits[rows].detach().float(), self.temperature)
            kl[i] = _scatter(pixel.flatten(1).mean(1), rows, batch)
            pairs = [(student.output.decoder_features[name].float(),
                      teacher.decoder_features[name][rows].float(), class_masks(regions[rows], channels))
                     for name, channels in groups]
            loss, distance, ok = prototype_distillation(pairs)
            proto[i], dist[i] = _scatter(loss, rows, batch), _scatter(distance, rows, batch)
            usable[i], ran[i] = _scatter(ok.float(), rows, batch) > 0, rows
        return tuple(torch.stack(x, 1) for x in (kl, proto, dist, usable, ran))

    def forward(self, teacher: NetOutput, students: Mapping[str, StudentPass], regions: torch.Tensor,
                present: torch.Tensor, step: int) -> PassionTerms:
        """One step's terms; in training mode also feeds the preference schedule.

        Args:
            teacher: the network's output for the B labelled samples with their own modalities
                (logits, decoder_features, and branch_logits where the network has them).
            students: modality -> :class:`StudentPass` (empty during the warm-up).
            regions: (B, T, *S) binary target regions.
            present: (B, M) > 0 where a sample has a modality.
            step: the 0-based optimiser step (gives the epoch and the warm-up).
        """
        regions = regions.float()
        batch, device = regions.shape[0], regions.device
        present = present.to(device=device).bool()
        freq = self.inverse_frequency.to(device)
        beta = self.schedule.beta.detach().clone().to(device)  # this step's, before any update
        unimodal = self.unimodal_terms(teacher, regions, present)
        uni = torch.stack([unimodal[i].sum() / batch if i in unimodal else regions.new_zeros(())
                           for i in range(len(self.modality_names))])
        names = self.modality_names
        if self.schedule.warming_up(step):
            total = self.unimodal_weight * (beta * freq * uni).sum()
            if self.training:
                self.schedule.end_step(step)
            return PassionTerms(total=total, unimodal={names[i]: uni[i] for i in unimodal},
                                weights={m: float(beta[i] * freq[i]) for i, m in enumerate(names)}, warming_up=True)
        kl, proto, dist, usable, ran = self.student_terms(teacher, students, regions)
        kl, proto = (torch.where(present, x, torch.zeros_like(x)) for x in (kl, proto))
        counted = present & ran & usable
        preference = self.reduce(relative_preference(dist, counted))  # the global batch's, as one process
        lagging = (preference > 0).to(regions.dtype)
        kl_m, proto_m = kl.sum(0) / batch, proto.sum(0) / batch
        total = (self.distill_weight * (beta * freq * kl_m).sum()
                 + self.prototype_weight * (lagging * freq * proto_m).sum()
                 + self.unimodal_weight * (lagging * beta * freq * uni).sum())
        if self.training:
            self.schedule.record(dist, counted)
            self.schedule.end_step(step)
        return PassionTerms(
            total=total,
            distillation={m: kl_m[i] for i, m in enumerate(names)},
            prototype={m: proto_m[i] for i, m in enumerate(names)},
            unimodal={names[i]: uni[i] for i in unimodal},
            preference={m: float(preference[i]) for i, m in enumerate(names)},
            lagging=tuple(m for i, m in enumerate(names) if lagging[i] > 0),
            weights={m: float(beta[i] * freq[i]) for i, m in enumerate(names)})
