"""MONAI datasets and data loaders from case records and a model card.

Every sample is a dict ``{"case": str, "image": (M, X, Y, Z) float32, "label": (T, X, Y, Z)
float32 region channels (labelled cases only), "present": (M,) bool, the modalities given,
"spacing": (3,) the working grid's spacing in mm}``;
a batch adds a leading batch dimension.
The deterministic part (reading, resampling, normalising: :class:`LoadCased`) is cached by
MONAI (in memory, or on disk with ``cache_dir``); the random part (foreground/background
balanced crops, flips, intensity jitter) runs fresh for every sample.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)

from ciml.choices import CACHE_MODES
from ciml.config.card import ModelCard
from ciml.data.case import load_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation of training crops (the model card does not describe them yet).

    Args:
        positive: weight of crops centred on a foreground voxel (any target).
        negative: weight of crops centred on a background voxel; 1:1 as nnU-Net-like pipelines
            balance them, so small tumours are seen as often as the rest of the volume.
        samples_per_case: crops taken from each loaded case.
        flip_probability: probability of mirroring each spatial axis.
        intensity_scale: image values are multiplied by ``1 + u``, ``u`` in +-this.
        intensity_shift: ``u`` in +-this is added to image values (they are normalised, so
            this is in units of standard deviations or window widths).
        intensity_probability: probability of each intensity jitter.
    """

    positive: float = 1.0
    negative: float = 1.0
    samples_per_case: int = 1
    flip_probability: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    intensity_probability: float = 0.5


NO_AUGMENTATION = Augmentation(flip_probability=0.0, intensity_probability=0.0)
"""Crops only: for comparisons and tests that need deterministic samples."""


class LoadCased(MapTransform):
    """Load a case record into ``image`` and ``label`` arrays with :func:`load_record`.

    A single transform, rather than MONAI's ``LoadImaged`` + ``ResampleToMatchd`` +
    ``NormalizeIntensityd`` chain, because the case loader already does every step with the
    checks and messages the rest of ``ciml`` relies on (geometry warnings, label conventions,
    card values, per-modality normalisation), so training sees exactly what inference sees.
    Resampling warnings are logged once, when the case is first loaded (then cached).

    Args:
        card: the model card.
        allow_missing: fill missing non-reference modalities with zeros (see ``load_case``).
    """

    def __init__(self, card: ModelCard, allow_missing: bool = False):
        super().__init__(keys=list(card.modality_names), allow_missing_keys=True)
        self.card = card
        self.allow_missing = allow_missing

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        case = load_record(self.card, data, allow_missing=self.allow_missing)
        for warning in case.warnings:
            log.warning(warning)
        sample: dict[str, Any] = {"case": case.case_id, "image": case.image,
                                  "present": np.asarray(case.present, dtype=bool),
                                  "spacing": np.asarray(case.grid.spacing, dtype=np.float64)}
        if case.regions is not None:
            sample["label"] = case.regions
        return sample


def train_transforms(card: ModelCard, labelled: bool = True,
                     augmentation: Augmentation = Augmentation(), allow_missing: bool = False) -> Compose:
    """Load, pad to the patch size, crop ``card.training.patch_size``, augment.

    Args:
        card: the model card (patch size from ``card.training.patch_size``).
        labelled: crops balanced between foreground and background need a label; unlabelled
            cases (semi-supervised training) get uniformly random crops.
        augmentation: the random augmentation settings.
        allow_missing: see :class:`LoadCased`.
    """
    patch = list(card.training.patch_size)
    keys = ["image", "label"] if labelled else ["image"]
    if labelled:
        crop = RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=patch,
                                      pos=augmentation.positive, neg=augmentation.negative,
                                      num_samples=augmentation.samples_per_case)
    else:
        crop = RandSpatialCropd(keys=keys, roi_size=patch, random_size=False)
    steps = [LoadCased(card, allow_missing), SpatialPadd(keys=keys, spatial_size=patch), crop]
    if augmentation.flip_probability > 0:
        steps += [RandFlipd(keys=keys, prob=augmentation.flip_probability, spatial_axis=axis)
                  for axis in range(len(patch))]
    if augmentation.intensity_probability > 0:
        steps += [RandScaleIntensityd(keys="image", factors=augmentation.intensity_scale,
                                      prob=augmentation.intensity_probability),
                  RandShiftIntensityd(keys="image", offsets=augmentation.intensity_shift,
                                      prob=augmentation.intensity_probability)]
    steps.append(EnsureTyped(keys=keys, dtype=np.float32, track_meta=False))
    return Compose(steps)


def validation_transforms(card: ModelCard, allow_missing: bool = False) -> Compose:
    """Load whole cases (no crop: validation runs a sliding window over the whole image)."""
    return Compose([LoadCased(card, allow_missing),
                    EnsureTyped(keys=["image", "label"], dtype=np.float32, track_meta=False,
                                allow_missing_keys=True)])


def build_dataset(records: Sequence[Mapping[str, Any]], transform: Compose, cache: str = "memory",
                  cache_dir: str | None = None, seed: int | None = None,
                  num_workers: int = 0) -> Dataset:
    """A MONAI dataset over case records.

    Args:
        records: case records (:func:`ciml.data.layouts.list_cases`).
        transform: :func:`train_transforms` or :func:`validation_transforms`.
        cache: ``memory`` (CacheDataset: every loaded case kept in RAM), ``disk``
            (PersistentDataset in ``cache_dir``, for datasets larger than RAM) or ``none``.
        seed: seeds the random transforms, for reproducible crops.
        num_workers: threads that fill the memory cache (0: the calling thread).
    """
    if seed is not None:
        transform.set_random_state(seed=seed)
    data = [dict(r) for r in records]
    if cache == "memory":
        return CacheDataset(data, transform, num_workers=num_workers, progress=False)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs a cache_dir")
        return PersistentDataset(data, transform, cache_dir=cache_dir)
    if cache == "none":
        return Dataset(data, transform)
    raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")


def build_loaders(card: ModelCard, train_records: Sequence[Mapping[str, Any]],
                  validation_records: Sequence[Mapping[str, Any]] = (), *,
                  augmentation: Augmentation = Augmentation(), cache: str = "memory",
                  cache_dir: str | None = None, num_workers: int = 0, seed: int | None = None,
                  allow_missing: bool = False) -> dict[str, DataLoader]:
    """Training and validation data loaders.

    Labelled training cases give the ``train`` loader (balanced crops, batch size
    ``card.training.batch_size``); unlabelled ones, if any, an ``unlabelled`` loader of the same
    batch size (for semi-supervised training); validation cases a ``validation`` loader of whole
    cases, one per batch (they differ in size). Loaders with no cases are left out.

    Args:
        card: the model card.
        train_records, validation_records: case records.
        augmentation: random augmentation of training crops.
        cache, cache_dir: see :func:`build_dataset`; a disk cache uses one sub-folder per role.
        num_workers: DataLoader worker processes.
        seed: seeds the random transforms and the shuffling (default ``card.training.seed``), so
            that the same cases give the same batches.
        allow_missing: see :class:`LoadCased`.
    """
    seed = card.training.seed if seed is None else seed
    labelled = [r for r in train_records if r.get("label")]
    unlabelled = [r for r in train_records if not r.get("label")]
    batch = card.training.batch_size
    loaders: dict[str, DataLoader] = {}

    def sub(name: str) -> str | None:
        return None if cache_dir is None else f"{cache_dir}/{name}"

    for name, records, labels in (("train", labelled, True), ("unlabelled", unlabelled, False)):
        if records:
            dataset = build_dataset(records, train_transforms(card, labels, augmentation, allow_missing),
                                    cache, sub(name), seed)
            loaders[name] = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=False,
                                       num_workers=num_workers,
                                       generator=torch.Generator().manual_seed(seed))
    if validation_records:
        dataset = build_dataset(validation_records, validation_transforms(card, allow_missing),
                                cache, sub("validation"))
        loaders["validation"] = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
    return loaders


def split_records(records: Sequence[Mapping[str, Any]], validation_fraction: float,
                  seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split labelled records into training and validation by a seeded shuffle.

    Unlabelled records always go to training. At least one labelled case stays in training.
    """
    labelled = [dict(r) for r in records if r.get("label")]
    order = np.random.default_rng(seed).permutation(len(labelled))
    count = min(int(round(validation_fraction * len(labelled))), max(len(labelled) - 1, 0))
    validation = [labelled[i] for i in sorted(order[:count])]
    chosen = {id(r) for r in validation}
    train = [r for r in labelled if id(r) not in chosen] + [dict(r) for r in records if not r.get("label")]
    return train, validation
