"""Dataset layouts: from a folder (or a list file) to case records.

Every layout gives the same thing, a list of *case records*::

    {"case": "BraTS20_Training_001", "t1": "/data/.../..._t1.nii.gz", ..., "flair": "...",
     "label": "/data/.../..._seg.nii.gz",            # absent for an unlabelled case
     "label_convention": "brats2020",                # absent when labels hold the card's values
     "channels": {"flair": 0, ...}}                  # only for 4D files (MSD)

which :func:`ciml.data.case.load_record` and the datasets consume. Paths are absolute. The
layouts, their file trees and label conventions are documented in ``docs/data-layouts.md``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ciml.data.case import RECORD_KEYS
from ciml.data.errors import DataError
from ciml.data.io import PathLike, image_suffix
from ciml.io_utils import atomic_path

DATALIST = "dataset.json"
CASES_CSV = "cases.csv"
NIFTI = (".nii.gz", ".nii")

# File name part -> modality name of the presets (brats: t1, t1ce, t2, flair; PET/CT: pet, ct).
BRATS2020_FILES = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "label"}
BRATS2023_FILES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "label"}
AUTOPET_FILES = {"SUV": "pet", "CTres": "ct", "SEG": "label"}
HECKTOR_FILES = {"PT": "pet", "CT": "ct"}
# MSD Task01's channel names (dataset.json "modality") -> modality names; the default order.
MSD_CHANNELS = {"flair": "flair", "t1w": "t1", "t1gd": "t1ce", "t2w": "t2"}


@dataclass(frozen=True)
class Layout:
    """A dataset layout.

    Args:
        name: the name users choose it by (``--layout brats2020``).
        description: one line for help texts.
        detect: whether a folder looks like this layout.
        cases: the folder's case records.
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    cases: Callable[[Path], list[dict[str, Any]]]


def _nifti(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in NIFTI if (folder / f"{stem}{s}").is_file()), None)


def _case_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _per_case_folder(separator: str, files: Mapping[str, str], convention: str, any_name: bool = False):
    """A BraTS-style layout: ``<case>/<case><separator><part>.nii.gz``.

    ``files`` maps the dataset's parts to modality names (and ``label``). With ``any_name``,
    other parts are modalities of that very name (``<case>_shapes.nii.gz`` -> ``shapes``, as the
    sample data is written), and the label convention applies only to cases with BraTS parts.
    """

    def parts(folder: Path) -> dict[str, Path]:
        if not any_name:
            found = {part: _nifti(folder, f"{folder.name}{separator}{part}") for part in files}
            return {part: path for part, path in found.items() if path is not None}
        prefix = f"{folder.name}{separator}"
        return {p.name[len(prefix): -len(image_suffix(p))]: p for p in _visible_nifti(folder)
                if p.name.startswith(prefix) and image_suffix(p) in NIFTI}

    def detect(root: Path) -> bool:
        return any(parts(folder) for folder in _case_folders(root))

    def cases(root: Path) -> list[dict[str, Any]]:
        records = []
        for folder in _case_folders(root):
            found = parts(folder)
            if not found:
                continue
            record: dict[str, Any] = {"case": folder.name}
            record.update({files.get(part, part): str(path) for part, path in sorted(found.items())})
            if "label" in record and set(found) & (set(files) - {"seg"}):
                record["label_convention"] = convention
            records.append(record)
        return records

    return detect, cases


def _autopet_detect(root: Path) -> bool:
    return any(_nifti(s, "SUV") for p in _case_folders(root) for s in _case_folders(p))


def _autopet_cases(root: Path) -> list[dict[str, Any]]:
    records = []
    for patient in _case_folders(root):
        for study in _case_folders(patient):
            record: dict[str, Any] = {"case": f"{patient.name}_{study.name}"}
            record.update({key: str(p) for part, key in AUTOPET_FILES.items()
                           if (p := _nifti(study, part)) is not None})
            if len(record) > 1:
                if "label" in record:
                    record["label_convention"] = "autopet"
                records.append(record)
    return records


def _images_folder(root: Path) -> Path:
    return root / "imagesTr" if (root / "imagesTr").is_dir() else root


def _visible_nifti(folder: Path) -> list[Path]:
    # MSD archives carry macOS "._" companions of every file; they are not images.
    return sorted(p for p in folder.glob("*.nii*") if not p.name.startswith(".") and image_suffix(p))


def _hecktor_detect(root: Path) -> bool:
    return any(p.name.split(".")[0].endswith("__CT") for p in _visible_nifti(_images_folder(root)))


def _hecktor_cases(root: Path) -> list[dict[str, Any]]:
    images, by_case = _images_folder(root), {}
    for path in _visible_nifti(images):
        case, _, part = path.name[: -len(image_suffix(path))].rpartition("__")
        if case and part in HECKTOR_FILES:
            by_case.setdefault(case, {"case": case})[HECKTOR_FILES[part]] = str(path)
    for case, record in by_case.items():
        label = _nifti(root / "labelsTr", case)
        if label is not None:
            record.update(label=str(label), label_convention="hecktor")
    return [by_case[c] for c in sorted(by_case)]


def _msd_detect(root: Path) -> bool:
    return (root / "imagesTr").is_dir() and bool(_visible_nifti(root / "imagesTr")) \
        and not _hecktor_detect(root)


def _msd_cases(root: Path) -> list[dict[str, Any]]:
    channels = {name: i for i, name in enumerate(MSD_CHANNELS.values())}
    if (root / DATALIST).is_file():
        declared = _read_json(root / DATALIST).get("modality", {})
        if declared:
            unknown = [v for v in declared.values() if v.lower() not in MSD_CHANNELS]
            if unknown:
                raise DataError(root / DATALIST, f"modality {', '.join(unknown)} is not a Task01 channel "
                                                 f"(known: {', '.join(MSD_CHANNELS)})")
            channels = {MSD_CHANNELS[v.lower()]: int(k) for k, v in declared.items()}
    records = []
    for path in _visible_nifti(root / "imagesTr"):
        case = path.name[: -len(image_suffix(path))]
        record: dict[str, Any] = {"case": case, **{m: str(path) for m in channels},
                                  "channels": dict(channels)}
        label = _nifti(root / "labelsTr", case)
        if label is not None:
            record.update(label=str(label), label_convention="msd")
        records.append(record)
    return records


def _datalist_detect(root: Path) -> bool:
    if not (root / DATALIST).is_file():
        return False
    entries = _read_json(root / DATALIST).get("training", [])
    # An MSD dataset.json lists one 4D "image" per case; a datalist names each modality.
    return not any(isinstance(e, dict) and "image" in e for e in entries)


_brats2020 = _per_case_folder("_", BRATS2020_FILES, "brats2020", any_name=True)
_brats2023 = _per_case_folder("-", BRATS2023_FILES, "brats2023")

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("datalist", f"a MONAI-style {DATALIST}: training entries naming each modality and the label",
           _datalist_detect, lambda root: read_datalist(root / DATALIST)),
    Layout("csv", f"a folder with a {CASES_CSV}: columns case, one per modality, optional label",
           lambda root: (root / CASES_CSV).is_file(), lambda root: read_cases_csv(root / CASES_CSV)),
    Layout("hecktor", "HECKTOR 2022: imagesTr/<case>__CT.nii.gz and __PT, labelsTr/<case>.nii.gz",
           _hecktor_detect, _hecktor_cases),
    Layout("msd", "Medical Segmentation Decathlon Task01: imagesTr/<case>.nii.gz (4D), labelsTr",
           _msd_detect, _msd_cases),
    Layout("brats2023", "BraTS 2023+: <case>/<case>-t1n, -t1c, -t2w, -t2f, -seg .nii.gz", *_brats2023),
    Layout("brats2020", "BraTS 2018-2021 (and any <case>/<case>_<modality>.nii.gz folder): "
           "<case>/<case>_t1, _t1ce, _t2, _flair, _seg .nii.gz", *_brats2020),
    Layout("autopet", "autoPET: <patient>/<study>/SUV.nii.gz, CTres.nii.gz, SEG.nii.gz",
           _autopet_detect, _autopet_cases),
)}
"""The layouts, in detection order: files that declare the cases first, then folder patterns."""


def detect_layout(folder: PathLike) -> str:
    """The name of the layout of ``folder``.

    A ``dataset.json`` datalist or a ``cases.csv`` wins (they say explicitly what the cases
    are); otherwise exactly one folder pattern must match, else the user is asked to choose.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"dataset folder {root}", "not found" if not root.exists() else "is not a folder")
    matches = [name for name, layout in LAYOUTS.items() if layout.detect(root)]
    if not matches:
        raise DataError(f"dataset folder {root}", "matches no known layout "
                        f"({', '.join(LAYOUTS)}); see docs/data-layouts.md, or write a {CASES_CSV}")
    if matches[0] in ("datalist", "csv") or len(matches) == 1:
        return matches[0]
    raise DataError(f"dataset folder {root}", f"matches several layouts ({', '.join(matches)}); "
                                              "choose one explicitly")


def list_cases(source: PathLike, layout: str | None = None) -> list[dict[str, Any]]:
    """The case records of a dataset.

    Args:
        source: a dataset folder, a datalist ``.json`` file or a cases ``.csv`` file.
        layout: a name of :data:`LAYOUTS`, or ``None`` to detect it.

    Raises:
        DataError: unknown layout, nothing found, or a case list that cannot be read.
    """
    path = Path(source)
    if path.is_file() and layout is None:
        if path.suffix.lower() == ".json":
            return read_datalist(path)
        if path.suffix.lower() == ".csv":
            return read_cases_csv(path)
    if layout is not None and layout not in LAYOUTS:
        raise DataError("layout", f"{layout!r} is unknown (known: {', '.join(LAYOUTS)})")
    name = layout or detect_layout(path)
    if not path.is_dir():
        raise DataError(f"dataset folder {path}", "not found" if not path.exists() else "is not a folder")
    records = LAYOUTS[name].cases(path)
    if not records:
        raise DataError(f"dataset folder {path}", f"holds no case of the {name} layout")
    return records


def read_datalist(path: PathLike, key: str = "training") -> list[dict[str, Any]]:
    """Case records from a MONAI-style datalist: ``{"training": [{"t1": ..., "label": ...}]}``.

    Paths are relative to the json's folder; ``case`` defaults to the first image's name.
    A top-level ``label_convention`` applies to every entry that has no own.
    """
    path = Path(path)
    data = _read_json(path)
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataError(path, f"has no {key!r} list of case entries")
    default = {"label_convention": data["label_convention"]} if "label_convention" in data else {}
    return [_record({**default, **e}, path.parent, f"{path} {key}[{i}]") for i, e in enumerate(entries)]


def read_cases_csv(path: PathLike) -> list[dict[str, Any]]:
    """Case records from a CSV with columns ``case``, one per modality and optional ``label``.

    Paths are relative to the CSV's folder; an empty cell means the file is absent.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot be read as CSV ({exc})") from None
    if not rows or "case" not in rows[0]:
        raise DataError(path, "needs a header with a 'case' column and at least one row")
    return [_record({k: v for k, v in row.items() if k and v}, path.parent, f"{path} row {i + 2}")
            for i, row in enumerate(rows)]


def _record(entry: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in entry.items():
        if key in RECORD_KEYS and key != "label":
            record[key] = value
        elif isinstance(value, str):
            record[key] = str((base / value).resolve()) if value else value
        else:
            raise DataError(where, f"{key!r} must be a path, got {value!r}")
    if not record.get("case"):
        first = next((v for k, v in record.items() if k not in RECORD_KEYS), None)
        if first is None:
            raise DataError(where, "names no image")
        name = Path(first).name
        record["case"] = name[: -len(image_suffix(name))] if image_suffix(name) else name
    return {"case": str(record.pop("case")), **record}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, "must hold a JSON object")
    return data


def check_records(records: Iterable[Mapping[str, Any]], modalities: Iterable[str],
                  require_label: bool = False) -> None:
    """Refuse records that lack a modality (or a label) or name files that do not exist.

    Cheap (no image is read), so that a training run fails before its first step.
    """
    modalities = tuple(modalities)
    for record in records:
        case = f"case {record.get('case', '?')}"
        missing = [m for m in modalities if not record.get(m)]
        if missing:
            given = [k for k in record if k not in RECORD_KEYS]
            raise DataError(case, f"has no image for {', '.join(missing)} "
                                  f"(it has {', '.join(given) or 'none'}); "
                                  "the dataset's modality names must be the model card's")
        if require_label and not record.get("label"):
            raise DataError(case, "has no label map")
        for key in (*modalities, "label"):
            if record.get(key) and not Path(record[key]).exists():
                raise DataError(f"{case}: {key} {record[key]}", "file not found")


def write_datalist(records: Iterable[Mapping[str, Any]], path: PathLike, key: str = "training",
                   overwrite: bool = False) -> Path:
    """Write case records as a datalist, paths relative to its folder where possible."""

    path = Path(path)
    base = path.parent.resolve()
    entries = [{k: _relative(v, base) if k not in RECORD_KEYS or k == "label" else v
                for k, v in r.items()} for r in records]
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps({key: entries}, indent=2) + "\n")
    return path


def _relative(value: str, base: Path) -> str:
    try:
        return Path(value).resolve().relative_to(base).as_posix()
    except ValueError:
        return str(value)
