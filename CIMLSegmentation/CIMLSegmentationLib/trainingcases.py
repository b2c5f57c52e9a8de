"""The training-cases folder: a corrected case written as ``ciml train`` reads it.

"Add this case to training cases" writes the input volumes and the label map made from the chosen
segmentation (``label_map``, with the model's label values) as one case::

    FOLDER/
      dataset.json                      the datalist: every case, the card's modality names
      <case>/<case>_<modality>.nii.gz   one per modality of the model
      <case>/<case>_seg.nii.gz          the label map, the model's own label values

The case folders follow the BraTS-style layout (docs/data-layouts.md); the ``dataset.json``
datalist lists them under the model card's modality names with no label convention, so any
card's names and label values are read as they are (the datalist wins layout detection). It is
rewritten from the case folders after every change, and carries ``WRITTEN_BY`` so that a
folder holding someone else's ``dataset.json`` is refused rather than overwritten.

The images arrive as the glue has them (``slicer.util.arrayFromVolume``: [k, j, i]) with the
grid in Slicer's RAS (``geometry.geometry``); files are written in LPS, as ITK and NIfTI readers
expect. A case is written into a hidden folder beside its place and moved in whole, so a failed
write never leaves half a case. Plain Python on numpy and SimpleITK (both ship with Slicer; the
rest of the plain half needs neither), tested outside Slicer by reading the case back with the
core and training on it.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from .segments import SegmentError, paint_order, unknown_segments

DATALIST = "dataset.json"  # the name ciml.data.layouts detects
WRITTEN_BY = "CIML Segmentation training cases"
SUFFIX = ".nii.gz"
LABEL_PART = "seg"
SETTINGS_KEY = "CIMLSegmentation/trainingCasesFolder"  # the folder the user picked, remembered
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def label_map(masks: Mapping[str, np.ndarray], targets: Sequence[Mapping]) -> np.ndarray:
    """The model's label map from one binary mask per target segment.

    Args:
        masks: {segment name: array of 0/1 (any shape, the same for all)}; every name must be a
            target's name (``unknown_segments``), a target without a segment is empty.
        targets: the card's targets in card order, as ``report.segment_specs`` gives them
            ({"name", "label", "includes"}). Targets nest (BraTS: WT includes TC includes ET):
            a voxel gets the label of the most specific target that covers it
            (``segments.paint_order``), so the regions read back from the label map
            (``includes``) are the segments again, each grown by what the targets nested in it add.

    Returns:
        uint8 array of the masks' shape (int16 when a label exceeds 255).
    """
    unknown = unknown_segments(list(masks), [t["name"] for t in targets])
    if unknown:
        raise SegmentError(f"segment(s) {', '.join(repr(n) for n in unknown)} match no target of the model "
                           f"({', '.join(t['name'] for t in targets)}): rename or remove them")
    if not masks:
        raise SegmentError("the segmentation has no segment of the model's targets")
    shapes = {np.shape(m) for m in masks.values()}
    if len(shapes) != 1:
        raise SegmentError(f"the segments have different sizes ({', '.join(str(s) for s in sorted(shapes))})")
    dtype = np.uint8 if max(t["label"] for t in targets) <= 255 else np.int16
    labels = np.zeros(shapes.pop(), dtype=dtype)
    for target in paint_order(targets):
        mask = masks.get(target["name"])
        if mask is not None:
            labels[np.asarray(mask) > 0] = target["label"]
    return labels


def regions(labels: np.ndarray, targets: Sequence[Mapping]) -> Dict[str, np.ndarray]:
    """{target name: boolean mask} read back from a label map, as the core reads a case."""
    return {t["name"]: np.isin(labels, list(t["includes"])) for t in targets}


class CaseFolderError(Exception):
    """The case cannot be written there; the message (one line) says why."""


class CaseExists(CaseFolderError):
    """A case of that name is in the folder already: ask before replacing it."""


def case_name(volume_name: str, modality: str = "") -> str:
    """The case's folder name from the reference volume's name, without a trailing
    '_<modality>' or '-<modality>' (``BraTS-sample-000_t1ce`` -> ``BraTS-sample-000``), with
    anything but letters, digits, '-' and '_' made '-'."""
    name = volume_name.strip()
    if modality and re.search(rf"[_-]{re.escape(modality)}$", name, re.I):
        name = name[: -len(modality) - 1]
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")
    return safe or "case"


def file_names(case: str, modalities: Sequence[str]) -> Dict[str, str]:
    """{modality or 'label': file name inside the case folder}."""
    names = {m: f"{case}_{m}{SUFFIX}" for m in modalities}
    names["label"] = f"{case}_{LABEL_PART}{SUFFIX}"
    return names


def check_folder(folder) -> Path:
    """The folder, made if absent; refused when its dataset.json is not one this module wrote."""
    root = Path(folder)
    if not str(folder):
        raise CaseFolderError("Choose a training-cases folder.")
    datalist = root / DATALIST
    if datalist.is_file():
        try:
            ours = json.loads(datalist.read_text()).get("written_by") == WRITTEN_BY
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise CaseFolderError(f"{root} holds a {DATALIST} of another dataset: choose an empty folder "
                                  "or one this module wrote")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaseFolderError(f"cannot make the training-cases folder {root}: {exc.strerror or exc}") from None
    return root


def list_cases(folder, modalities: Sequence[str]) -> List[str]:
    """The complete cases in the folder (every modality and the label map), sorted."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and all((p / name).is_file() for name in file_names(p.name, modalities).values()))


def case_exists(folder, case: str) -> bool:
    return (Path(folder) / case).exists()


def cases_text(cases: Sequence[str], template: str = "{count} case(s): {names}", empty: str = "No case yet.") -> str:
    """The panel's line under the folder: the count and the names."""
    return template.format(count=len(cases), names=", ".join(cases)) if cases else empty


def _image(array: np.ndarray, grid: Mapping) -> sitk.Image:
    """A SimpleITK image from a [k, j, i] array and a RAS grid, in LPS."""
    dims = list(grid["dimensions"])
    if list(np.shape(array)) != dims[::-1]:
        raise CaseFolderError(f"an image of size {list(np.shape(array))[::-1]} does not fit the grid {dims}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in grid["spacing"]])
    image.SetOrigin([float(x) for x in RAS_TO_LPS @ np.asarray(grid["origin"], dtype=float)])
    image.SetDirection([float(x) for x in (RAS_TO_LPS @ np.asarray(grid["directions"], dtype=float)).ravel()])
    return image


def write_case(folder, case: str, images: Mapping[str, np.ndarray], labels: np.ndarray, grid: Mapping,
               modalities: Sequence[str], overwrite: bool = False) -> Path:
    """Write one case and rewrite the datalist; returns the case folder.

    Args:
        folder: the training-cases folder (``check_folder``).
        case: the case's name (``case_name``).
        images: {modality: [k, j, i] array} on one grid, every modality of ``modalities``.
        labels: the [k, j, i] label map with the model's values (``label_map``).
        grid: the grid in RAS, as ``geometry.geometry`` gives it (origin, spacing, directions
            with one column per voxel axis, dimensions [i, j, k]).
        modalities: the model card's modality names, in card order.
        overwrite: replace a case of that name (after the user said so); else CaseExists.
    """
    root = check_folder(folder)
    missing = [m for m in modalities if m not in images]
    if missing:
        raise CaseFolderError(f"no image for {', '.join(missing)}: every modality of the model is needed")
    target = root / case
    if target.exists() and not overwrite:
        raise CaseExists(f"the case {case} is in {root} already")
    names = file_names(case, modalities)
    work = Path(tempfile.mkdtemp(prefix=f".{case}.partial-", dir=str(root)))
    try:
        for modality in modalities:
            sitk.WriteImage(_image(np.asarray(images[modality], dtype=np.float32), grid), str(work / names[modality]),
                            True)
        sitk.WriteImage(_image(np.asarray(labels), grid), str(work / names["label"]), True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_datalist(root, modalities)
    return target


def write_datalist(folder, modalities: Sequence[str]) -> Path:
    """Rewrite FOLDER/dataset.json from the complete case folders (paths relative to it)."""
    root = Path(folder)
    entries = []
    for case in list_cases(root, modalities):
        names = file_names(case, modalities)
        entries.append({"case": case, **{key: f"{case}/{name}" for key, name in names.items()}})
    path = root / DATALIST
    partial = path.with_name(f".{DATALIST}.partial")
    partial.write_text(json.dumps({"written_by": WRITTEN_BY, "training": entries}, indent=2) + "\n")
    os.replace(partial, path)
    return path
