"""Preset model cards for the tasks the project ships: BraTS, autoPET, HECKTOR and shapes.

Presets are plain data run through the same validation as a user's card, so a preset can be
written out (``ciml card --preset brats``), edited and read back.
"""

from __future__ import annotations

import copy
from typing import Any

from ciml.config.card import ModelCard
from ciml.config.validate import card_from_dict
from ciml.errors import CardError

# Target codes, as in the Slicer module's terminology file
# (Resources/Terminology/SegmentationCategoryTypeModifier-CIMLSegmentation.term.json): SNOMED CT
# where a concept exists; the BraTS regions have none, so they use the private scheme 99CIML.
_SCT = "SCT"
_CIML = "99CIML"

BRATS: dict[str, Any] = {
    "name": "brats",
    "description": "Brain tumour sub-regions from four MRI sequences (BraTS 2020 labels).",
    "modalities": [
        {"name": "t1", "kind": "MR"},
        {"name": "t1ce", "kind": "MR"},
        {"name": "t2", "kind": "MR"},
        {"name": "flair", "kind": "MR"},
    ],
    # Painted in this order into the label map, inner regions last (ET inside TC inside WT).
    "targets": [
        {"name": "WT", "label": 2, "includes": [1, 2, 4], "color": [0.2, 0.8, 0.2],
         "terminology": {"scheme": _CIML, "code": "BRATS-WT", "meaning": "Whole tumor"}},
        {"name": "TC", "label": 1, "includes": [1, 4], "color": [0.9, 0.3, 0.2],
         "terminology": {"scheme": _CIML, "code": "BRATS-TC", "meaning": "Tumor core"}},
        {"name": "ET", "label": 4, "includes": [4], "color": [1.0, 0.9, 0.1],
         "terminology": {"scheme": _CIML, "code": "BRATS-ET", "meaning": "Enhancing tumor"},
         "needs": ["t1ce"]},  # enhancement shows on T1ce alone
    ],
    "subtasks": [
        {"name": "whole", "targets": ["WT"], "primary": "flair", "auxiliaries": ["t1", "t1ce", "t2"]},
        {"name": "core", "targets": ["TC", "ET"], "primary": "t1ce", "auxiliaries": ["t1", "t2", "flair"]},
    ],
    "reference": "t1ce",
    "spacing": [1.0, 1.0, 1.0],
    # Window = training patch: instance normalisation statistics depend on the window's extent.
    "inference": {"roi_size": [128, 128, 128], "overlap": 0.25},
    "training": {"patch_size": [128, 128, 128]},
}

AUTOPET: dict[str, Any] = {
    "name": "autopet",
    "description": "FDG-avid lesions from whole-body PET/CT (autoPET).",
    "modalities": [
        {"name": "pet", "kind": "PET", "normalization": "suv_clip", "window": [0.0, 20.0]},
        {"name": "ct", "kind": "CT", "normalization": "window", "window": [-1000.0, 1000.0]},
    ],
    "targets": [
        {"name": "lesion", "label": 1, "color": [1.0, 0.2, 0.2],
         "terminology": {"scheme": _SCT, "code": "52988006", "meaning": "Lesion"}},
    ],
    "subtasks": [{"name": "lesion", "targets": ["lesion"], "primary": "pet", "auxiliaries": ["ct"]}],
    "reference": "ct",
    "spacing": [2.0, 2.0, 3.0],
    "inference": {"roi_size": [128, 128, 128], "overlap": 0.25},
    "training": {"patch_size": [128, 128, 128]},
}

HECKTOR: dict[str, Any] = {
    "name": "hecktor",
    "description": "Head and neck primary tumour (GTVp) and lymph nodes (GTVn) from PET/CT (HECKTOR 2022).",
    "modalities": [
        {"name": "pet", "kind": "PET", "normalization": "suv_clip", "window": [0.0, 25.0]},
        {"name": "ct", "kind": "CT", "normalization": "window", "window": [-200.0, 300.0]},
    ],
    "targets": [
        {"name": "GTVp", "label": 1, "color": [0.9, 0.2, 0.2],
         "terminology": {"scheme": _SCT, "code": "86049000", "meaning": "Neoplasm, Primary"}},
        {"name": "GTVn", "label": 2, "color": [0.2, 0.4, 0.9],
         "terminology": {"scheme": _SCT, "code": "14799000", "meaning": "Neoplasm, Secondary"}},
    ],
    "subtasks": [
        {"name": "primary_tumour", "targets": ["GTVp"], "primary": "pet", "auxiliaries": ["ct"]},
        {"name": "nodes", "targets": ["GTVn"], "primary": "pet", "auxiliaries": ["ct"]},
    ],
    "reference": "ct",
    "spacing": [1.0, 1.0, 1.0],
    "inference": {"roi_size": [96, 96, 96], "overlap": 0.25},
}

# The synthetic demonstration task (see docs/sample-data.md): `shapes` shows every candidate shape,
# `cue` marks which candidates are targets (absent from `shapes`), `echo` repeats `shapes`.
SHAPES: dict[str, Any] = {
    "name": "shapes",
    "description": "Synthetic task whose label needs complementary information from an auxiliary.",
    "modalities": [
        {"name": "shapes", "kind": "MR"},
        {"name": "cue", "kind": "MR"},
        {"name": "echo", "kind": "MR"},
    ],
    "targets": [{"name": "target", "label": 1, "color": [1.0, 0.5, 0.0]}],
    "subtasks": [{"name": "target", "targets": ["target"], "primary": "shapes",
                  "auxiliaries": ["cue", "echo"]}],
    "reference": "shapes",
    "network": {"features": [8, 16, 32, 64]},
    "inference": {"roi_size": [64, 64, 64], "overlap": 0.25},
    "training": {"patch_size": [64, 64, 64], "batch_size": 2, "max_steps": 300},
}

PRESETS: dict[str, dict[str, Any]] = {
    "brats": BRATS, "autopet": AUTOPET, "hecktor": HECKTOR, "shapes": SHAPES,
}


def preset_dict(name: str) -> dict[str, Any]:
    """A fresh, editable copy of a preset's plain data."""
    if name not in PRESETS:
        raise CardError("preset", f"{name!r} is not a preset (known: {', '.join(PRESETS)})")
    return copy.deepcopy(PRESETS[name])


def preset(name: str) -> ModelCard:
    """The validated card of a preset."""

    return card_from_dict(preset_dict(name))
