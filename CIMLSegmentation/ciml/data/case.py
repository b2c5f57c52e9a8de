"""Loading one case: every modality on the reference grid, normalised, with its label regions.

This is what ``ciml segment``, training and evaluation call. The steps, in order:

1. read the reference modality (``card.reference``); its grid is the grid of every output;
2. the working grid is that grid at ``card.spacing`` (the same grid when ``None``);
3. read each modality, refuse unusable images (see :mod:`ciml.data.io`), replace NaN and
   infinite voxels (with a warning), warn when its grid differs from the reference's and
   resample it (linear) onto the working grid;
4. normalise each modality as the card says (:mod:`ciml.data.normalize`);
5. read the label map if any, map the dataset's convention to the card's values, refuse
   unknown values, resample it (nearest) and turn it into one region channel per target.

Predictions made on the working grid go back to the reference grid with :meth:`Case.to_reference`.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from ciml.config.card import Modality, ModelCard
from ciml.data.errors import DataError
from ciml.data.foreground import body_mask
from ciml.data.geometry import Geometry, alignment_warnings, nonzero_box, resample
from ciml.data.io import PathLike, array_to_image, check_image, image_suffix, image_to_array, read_image
from ciml.data.labels import (
    as_label_values,
    check_label_values,
    convention,
    label_to_regions,
    regions_to_label,
)
from ciml.data.normalize import fill_value, normalize
from ciml.data.separable import linear_regrid, shares_direction

READ_WORKERS = 4  # modalities read and prepared at once by load_case

# label_map resamples only where a probability comes within this of the threshold: far more than
# float32 rounding in a convex combination of neighbours, far less than any probability of interest
THRESHOLD_MARGIN = 1e-3

RECORD_KEYS = ("case", "label", "label_convention", "channels")
"""Keys of a case record besides the modality names (see :mod:`ciml.data.layouts`)."""


@dataclass
class Case:
    """One case, ready for a network.

    Attributes:
        case_id: the case's name.
        image: float32 ``(M, X, Y, Z)``, the card's modalities in card order, normalised, on
            ``grid``.
        grid: the working grid of ``image`` and ``regions``: the reference grid at the card's
            spacing.
        reference: the reference modality's own grid, the grid every output is written on.
        regions: float32 ``(T, X, Y, Z)`` region channels in card target order, or ``None``
            for an unlabelled case.
        present: per modality, whether it was given (a missing one is all zeros).
        warnings: sentences for the user's report (resampling, missing modalities, replaced
            NaN or infinite voxels).
        reference_body: bool ``(X, Y, Z)`` the body on ``reference`` (the reference modality's
            normalised non-zero voxels, holes filled), or ``None``: maps brought back to the
            reference grid are cut to it, since interpolation would smear them past the body.
    """

    case_id: str
    image: np.ndarray
    grid: Geometry
    reference: Geometry
    regions: np.ndarray | None = None
    present: tuple[bool, ...] = ()
    warnings: list[str] = field(default_factory=list)
    reference_body: np.ndarray | None = None

    def to_reference(self, values: np.ndarray, interpolation: str = "linear",
                     within: tuple[slice, ...] | None = None) -> np.ndarray:
        """Bring values on the working grid back onto the reference grid.

        Args:
            values: ``(C, X, Y, Z)`` or ``(X, Y, Z)`` on :attr:`grid` (probabilities, heat maps,
                or a label map with ``interpolation="nearest"``).
            within: a box on :attr:`grid` outside which the values are 0 (see :func:`regrid`).
        """
        return regrid(values, self.grid, self.reference, interpolation, within)

    def map_to_reference(self, values: np.ndarray) -> np.ndarray:
        """A map that is 0 outside the body (an effect or heat map) onto the reference grid,
        cut to :attr:`reference_body`; only the box of its non-zero voxels is resampled."""
        values = np.asarray(values, np.float32)
        box = nonzero_box(values != 0)
        if box is None:
            return np.zeros(tuple(self.reference.size), np.float32)
        out = self.to_reference(values, within=box)
        if self.reference_body is not None:
            np.multiply(out, self.reference_body, out=out)
        return out

    def label_map(self, regions: np.ndarray, card: ModelCard, threshold: float | None = None) -> np.ndarray:
        """The output label map on the reference grid, from region probabilities on :attr:`grid`.

        Probabilities are resampled (linear) before thresholding, so that a coarser working
        spacing gives smooth boundaries; pieces of tumour smaller than the card's
        ``inference.min_component_ml`` are dropped. See :func:`~ciml.data.labels.regions_to_label`.

        Args:
            regions: ``(T, X, Y, Z)`` probabilities (or binary masks) on :attr:`grid`.
            card: the model card (target labels and order, default threshold).

        Returns:
            uint16 ``(X, Y, Z)`` on :attr:`reference`, ready for ``write_image(.., case.reference, ..)``.
        """
        voxel_ml = float(np.prod(self.reference.spacing)) / 1000.0
        threshold = card.inference.threshold if threshold is None else threshold
        regions = np.asarray(regions, np.float32)
        # A linear interpolation never exceeds its neighbours, so only target voxels next to a
        # value near the threshold can cross it: the rest of the grid is left unresampled.
        box = nonzero_box(regions.max(axis=0) > threshold - THRESHOLD_MARGIN)
        if box is None:
            return np.zeros(tuple(self.reference.size), np.uint16)
        return regions_to_label(self.to_reference(regions, within=box), card, threshold, voxel_ml)


def regrid(values: np.ndarray, source: Geometry, target: Geometry,
           interpolation: str = "linear", within: tuple[slice, ...] | None = None) -> np.ndarray:
    """Resample ``(C, X, Y, Z)`` or ``(X, Y, Z)`` values from one grid to another, by position.

    Linear interpolation between grids of one direction (the working grid and its reference)
    goes one axis at a time (:mod:`ciml.data.separable`, the same values as SimpleITK's, faster),
    and there only target voxels next to the ``within`` box of ``source`` are computed (the
    others are 0: exact when the values outside the box are 0); the rest goes through SimpleITK,
    over the whole grid.
    """
    values = np.asarray(values)
    if source.same_grid(target):
        return values
    if values.ndim == len(source.size):
        return regrid(values[None], source, target, interpolation, within)[0]
    if interpolation == "linear" and shares_direction(source, target):
        return linear_regrid(values, source, target, within).astype(values.dtype, copy=False)
    return sitk_regrid(values, source, target, interpolation).astype(values.dtype, copy=False)


def sitk_regrid(values: np.ndarray, source: Geometry, target: Geometry,
                interpolation: str = "linear") -> np.ndarray:
    """:func:`regrid` of ``(C, *source.size)`` values by SimpleITK's ``Resample``, channel by channel."""
    return np.stack([image_to_array(resample(array_to_image(c, source), target, interpolation)) for c in values])


def load_case(card: ModelCard, images: Mapping[str, PathLike | None], label: PathLike | None = None,
              *, case_id: str = "", channels: Mapping[str, int] | None = None,
              label_convention: str | None = None, allow_missing: bool = False) -> Case:
    """Read, check, align and normalise one case.

    Args:
        card: the model card (modalities, reference, spacing, targets).
        images: modality name -> image file or DICOM folder. Extra names are ignored.
        label: the label map, or ``None``.
        case_id: the case's name (messages and results); defaults to the reference's file name.
        channels: modality name -> channel index, for modalities stored together in one 4D file
            (the Medical Segmentation Decathlon's ``imagesTr``).
        label_convention: the dataset's label convention (:data:`~ciml.data.labels.CONVENTIONS`);
            ``None`` means the file already holds the card's values.
        allow_missing: fill a missing non-reference modality with zeros (and warn) instead of
            refusing the case; for models trained to cope with missing modalities.

    Raises:
        DataError: a missing modality, an unusable image or label map, grids that do not meet.
    """
    channels = dict(channels or {})
    ref_name = card.reference
    case_id = case_id or _stem(images.get(ref_name))
    where = f"case {case_id}: " if case_id else ""
    missing = [m for m in card.modality_names if images.get(m) in (None, "")]
    if ref_name in missing or (missing and not allow_missing):
        raise DataError(f"{where}modalit{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}",
                        f"no image given (the model card {card.name!r} needs "
                        f"{', '.join(card.modality_names)}; {ref_name} is the reference)")
    warnings: list[str] = []
    # a 4D file (several modalities as channels) is read once, before the modalities are prepared
    four_d: dict[str, sitk.Image] = {}
    for m in [ref_name, *card.modality_names]:
        if m in channels and m not in missing and str(images[m]) not in four_d:
            four_d[str(images[m])] = read_image(images[m], 4, f"{where}{m} image", finite=False)

    def read(name: str, notes: list[str]) -> sitk.Image:
        # NaN and infinite voxels are replaced per modality (a 4D stack per channel), noted in notes.
        path = images[name]
        if name not in channels:
            return read_image(path, 3, f"{where}{name} image", notes)
        stack = four_d[str(path)]
        if not 0 <= channels[name] < stack.GetSize()[3]:
            raise DataError(f"{where}{name} image {path}", f"has no channel {channels[name]} "
                                                           f"(it has {stack.GetSize()[3]})")
        volume = stack[:, :, :, channels[name]]
        return check_image(volume, f"{where}{name} image {path} channel {channels[name]}", 3, notes)

    reference_image = read(ref_name, warnings)
    reference = Geometry.of(reference_image)
    grid = reference.with_spacing(card.spacing)
    ref_what = f"{ref_name} ({images[ref_name]})"

    def prepared(modality: Modality) -> tuple[np.ndarray, list[str]]:
        """One modality on the working grid, normalised, and what to warn about it."""
        if modality.name in missing:
            return np.zeros(grid.size, np.float32), [f"{where}{modality.name}: missing; its channel is filled with zeros"]
        notes: list[str] = []
        image = reference_image if modality.name == ref_name else read(modality.name, notes)
        what = f"{where}{modality.name} image {images[modality.name]}"
        _refuse_constant(image, what)
        background = fill_value(modality)
        notes += alignment_warnings(Geometry.of(image), reference, what, ref_what, "linear", background)
        # float before interpolating, so that integer images are not rounded.
        resampled = resample(sitk.Cast(image, sitk.sitkFloat32), grid, "linear", background)
        return normalize(image_to_array(resampled), modality), notes

    # The modalities are prepared side by side: decompressing, resampling and normalising spend
    # most of their time outside the GIL (four float32 BraTS-sized files read in 0.27 s against
    # 0.51 s one after the other). Results, warnings and the first error keep the card's order.
    with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(card.modalities))) as pool:
        done = list(pool.map(prepared, card.modalities))
    volumes = [volume for volume, _ in done]
    warnings += [note for _, notes in done for note in notes]
    regions = None
    if label is not None and label != "":
        regions, label_warnings = _load_regions(card, label, label_convention, reference, grid,
                                                where, ref_what)
        warnings += label_warnings
    present = tuple(m not in missing for m in card.modality_names)
    reference_body = body_mask(normalize(image_to_array(sitk.Cast(reference_image, sitk.sitkFloat32)),
                                         card.modalities[card.modality_index(ref_name)]))
    return Case(case_id=case_id, image=np.stack(volumes).astype(np.float32, copy=False), grid=grid,
                reference=reference, regions=regions, present=present, warnings=warnings,
                reference_body=reference_body)


def load_record(card: ModelCard, record: Mapping[str, Any], allow_missing: bool = False) -> Case:
    """:func:`load_case` for a case record (a dict from :mod:`ciml.data.layouts`)."""
    return load_case(card, {m: record.get(m) for m in card.modality_names}, record.get("label"),
                     case_id=str(record.get("case", "")), channels=record.get("channels"),
                     label_convention=record.get("label_convention"), allow_missing=allow_missing)


def load_reference_regions(card: ModelCard, record: Mapping[str, Any], reference: Geometry) -> np.ndarray:
    """A case record's label map as region channels on the reference grid (where outputs are
    written and the BraTS challenge scores), rather than on the working grid of :attr:`Case.regions`.

    Args:
        card: the model card (targets, label values).
        record: a labelled case record (its ``label`` and ``label_convention``).
        reference: :attr:`Case.reference` of the loaded case.

    Returns:
        bool ``(T, X, Y, Z)`` on ``reference``.
    """
    case_id = str(record.get("case", ""))
    regions, _ = _load_regions(card, record["label"], record.get("label_convention"), reference, reference,
                               f"case {case_id}: " if case_id else "", "the reference image")
    return regions.astype(bool)


def _load_regions(card: ModelCard, path: PathLike, label_convention: str | None, reference: Geometry,
                  grid: Geometry, where: str, ref_what: str) -> tuple[np.ndarray, list[str]]:
    source = f"{where}label map {path}"
    image = read_image(path, 3, f"{where}label map")
    values = image_to_array(image)
    if label_convention:
        values = convention(label_convention).apply(values, source)
    else:
        values = as_label_values(values, source)
    check_label_values(values, card, source)
    geometry = Geometry.of(image)
    warnings = alignment_warnings(geometry, reference, source, ref_what, "nearest", 0)
    on_grid = resample(array_to_image(values, geometry), grid, "nearest", 0)
    return label_to_regions(image_to_array(on_grid), card), warnings


def _refuse_constant(image: sitk.Image, what: str) -> None:
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() == stats.GetMaximum():
        raise DataError(what, f"is constant (every voxel is {stats.GetMinimum():g}); "
                              "an empty or blank image cannot be used")


def _stem(path: PathLike | None) -> str:
    if path is None:
        return ""
    name = str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name
