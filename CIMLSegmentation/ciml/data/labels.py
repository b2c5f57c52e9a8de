"""Label maps and region channels: conversions driven by the model card's targets.

A card's target is a *region*: the voxels of a reference label map whose value is in the
target's ``includes`` (BraTS: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}). The network predicts one
channel per target. The inverse paints the targets, in card order, with their ``label``: later
targets overwrite earlier ones, so when regions nest (ET inside TC inside WT) the innermost is
listed last and wins. A voxel predicted ET but not TC therefore still becomes ET (4): painting
order, not a separate consistency step, decides, which also keeps the inverse exact on valid
label maps.

Datasets use their own label values; a :class:`LabelConvention` maps them to the card's and
refuses values it does not know, so a BraTS 2023 map (3 = enhancing) is never read as a BraTS
2020 one (4 = enhancing) by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ciml.config.card import ModelCard
from ciml.data.errors import DataError
from ciml.data.geometry import nonzero_box


def known_label_values(card: ModelCard) -> tuple[int, ...]:
    """Label values a reference label map may hold for this card: 0 and every ``includes``."""
    return tuple(sorted({0} | {v for t in card.targets for v in t.includes}))


def as_label_values(array: np.ndarray, source: str) -> np.ndarray:
    """A label map's voxels as int32, refusing non-integer values (a probability map, say)."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise DataError(source, "holds non-integer values; a label map of integer values is expected")
    return array.astype(np.int32)


def check_label_values(array: np.ndarray, card: ModelCard, source: str) -> None:
    """Refuse a label map with values the card's targets do not mention."""
    known = known_label_values(card)
    unknown = sorted(set(np.unique(array).tolist()) - set(known))
    if unknown:
        raise DataError(source, f"has label value(s) {_join(unknown)} that the model card "
                                f"{card.name!r} does not know (known: {_join(known)})")


def label_to_regions(label: np.ndarray, card: ModelCard) -> np.ndarray:
    """One binary region channel per target.

    Args:
        label: label map in the card's values, shape ``(X, Y, Z)``.
        card: the model card (its targets' ``includes``).

    Returns:
        float32 array ``(T, X, Y, Z)``, 1 inside each target's region.
    """
    return np.stack([np.isin(label, t.includes) for t in card.targets]).astype(np.float32)


def drop_small_components(label: np.ndarray, min_voxels: float) -> np.ndarray:
    """``label`` (``(X, Y, Z)``) with every 26-connected piece of non-zero voxels smaller than
    ``min_voxels`` set to 0. scipy's labelling, not MONAI's RemoveSmallObjects: that one needs
    scikit-image, which nothing else here does."""
    if min_voxels <= 0 or not label.any():
        return label
    # every piece lies inside the box of the non-zero voxels, usually a small part of the volume
    box = nonzero_box(label > 0)
    inside = label[box]
    pieces, count = ndimage.label(inside > 0, structure=np.ones((3,) * label.ndim, dtype=bool))
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    small = sizes < min_voxels
    small[0] = False
    out = label.copy()
    out[box] = np.where(small[pieces], 0, inside)
    return out


def regions_to_label(regions: np.ndarray, card: ModelCard, threshold: float | None = None,
                     voxel_ml: float | None = None) -> np.ndarray:
    """A label map from region channels (binary masks or probabilities).

    Args:
        regions: ``(T, X, Y, Z)``, one channel per target in card order.
        card: the model card (target ``label`` values and order, ``inference.min_component_ml``).
        threshold: a voxel is in a region when its value exceeds this; defaults to
            ``card.inference.threshold``.
        voxel_ml: one voxel's volume in ml; with it, pieces smaller than
            ``card.inference.min_component_ml`` are dropped (:func:`drop_small_components`).

    Returns:
        uint16 label map ``(X, Y, Z)``; targets painted in card order, later ones winning.
    """
    regions = np.asarray(regions)
    if regions.shape[0] != len(card.targets):
        raise ValueError(f"expected {len(card.targets)} region channels ({', '.join(card.target_names)}), "
                         f"got {regions.shape[0]}")
    threshold = card.inference.threshold if threshold is None else threshold
    label = np.zeros(regions.shape[1:], dtype=np.uint16)
    for target, region in zip(card.targets, regions):
        label[region > threshold] = target.label
    if voxel_ml:
        label = drop_small_components(label, card.inference.min_component_ml / voxel_ml)
    return label


@dataclass(frozen=True)
class LabelConvention:
    """How a dataset writes its labels, and the card values they stand for.

    Args:
        name: the convention's name, used in messages and records (``brats2023``).
        mapping: dataset value -> card value; a value not in it is refused.
        hint: one sentence that helps when the values do not fit (which layout to choose).
    """

    name: str
    mapping: dict[int, int] = field(default_factory=dict)
    hint: str = ""

    def apply(self, label: np.ndarray, source: str) -> np.ndarray:
        """Map a label map's values to the card's, refusing values of another convention."""
        label = as_label_values(label, source)
        present = np.unique(label).tolist()
        unknown = sorted(set(present) - set(self.mapping))
        if unknown:
            raise DataError(source, f"has label value(s) {_join(unknown)}, which the {self.name} "
                                    f"convention does not use (it uses {_join(sorted(self.mapping))})"
                                    + (f"; {self.hint}" if self.hint else ""))
        if all(self.mapping[v] == v for v in present):
            return label
        lookup = np.zeros(max(self.mapping) + 1, dtype=np.int32)
        for source_value, card_value in self.mapping.items():
            lookup[source_value] = card_value
        return lookup[label]

    def invert(self, label: np.ndarray) -> np.ndarray:
        """Card values back to this convention's (to write a prediction the dataset's way)."""
        inverse = {card_value: value for value, card_value in self.mapping.items()}
        out = np.zeros_like(label)
        for card_value, value in inverse.items():
            out[label == card_value] = value
        return out


CONVENTIONS: dict[str, LabelConvention] = {c.name: c for c in (
    LabelConvention("brats2020", {0: 0, 1: 1, 2: 2, 4: 4},
                    "BraTS 2023 and later write enhancing tumour as 3: choose the brats2023 layout"),
    LabelConvention("brats2023", {0: 0, 1: 1, 2: 2, 3: 4},
                    "BraTS 2020 and earlier write enhancing tumour as 4: choose the brats2020 layout"),
    # MSD Task01: 1 edema, 2 non-enhancing tumour, 3 enhancing; BraTS 2020: 2, 1, 4.
    LabelConvention("msd", {0: 0, 1: 2, 2: 1, 3: 4},
                    "the Medical Segmentation Decathlon Task01 uses 1 edema, 2 non-enhancing, 3 enhancing"),
    LabelConvention("autopet", {0: 0, 1: 1}, "autoPET marks every lesion 1"),
    LabelConvention("hecktor", {0: 0, 1: 1, 2: 2}, "HECKTOR 2022 uses 1 GTVp and 2 GTVn"),
)}


def convention(name: str) -> LabelConvention:
    """The label convention called ``name`` (see :data:`CONVENTIONS`)."""
    if name not in CONVENTIONS:
        raise DataError("label convention", f"{name!r} is unknown (known: {', '.join(CONVENTIONS)})")
    return CONVENTIONS[name]


def _join(values) -> str:
    return ", ".join(str(v) for v in values)
