"""What the worker's outputs mean, as plain data: segment specs from the card, heat-map file
names, report.json and its relations rows, warnings and share texts.

Plain Python, tested outside Slicer; imports only ``ciml.config`` (no torch, no numpy).
``results`` puts these outputs into the Slicer scene.
"""

import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ciml.config import ModelCard


def segment_specs(card: ModelCard) -> List[Dict]:
    """Per target: segment name, label value, the label values its region includes (targets
    nest: BraTS WT includes TC and ET, so segments overlap as the regions do), colour and
    terminology, in card order."""
    return [{"name": t.name, "label": t.label, "includes": list(t.includes), "color": list(t.color),
             "terminology": t.terminology}
            for t in card.targets]


def terminology_string(term: Optional[Dict]) -> str:
    """A Slicer terminology entry ('context~category~type~...') for a card's SCT code, '' if none."""
    if not term or not term.get("code"):
        return ""
    coded = f"{term.get('scheme', 'SCT')}^{term['code']}^{term.get('meaning', '')}"
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            f"~SCT^49755003^Morphologically Altered Structure~{coded}~^^"
            "~Anatomic codes - DICOM master list~^^~^^")


def heat_map_key(stem: str, modalities: Sequence[str], targets: Sequence[str]) -> str:
    """'flair' -> 'flair'; 'WT_flair' -> 'WT/flair' (per-target map). Names are matched against
    the card, since modality and target names may themselves contain underscores."""
    if stem in modalities:
        return stem
    for target in targets:
        if stem.startswith(target + "_") and stem[len(target) + 1:] in modalities:
            return f"{target}/{stem[len(target) + 1:]}"
    return stem


def heat_map_files(out_dir: str, modalities: Sequence[str], targets: Sequence[str]) -> Dict[str, str]:
    """{'flair': path, 'WT/flair': path, ...} for the cam_* files the worker wrote."""
    found = {}
    for name in sorted(os.listdir(out_dir)):
        match = re.match(r"^cam_(.+?)\.(nrrd|nii\.gz|nii)$", name)
        if match:
            found[heat_map_key(match.group(1), modalities, targets)] = os.path.join(out_dir, name)
    return found


def read_report(out_dir: str) -> Dict:
    path = os.path.join(out_dir, "report.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def report_targets(report: Dict) -> Dict[str, Dict]:
    """The per-target part of report.json, as {target: entry}, whether stored as a dict or list."""
    targets = report.get("targets", {})
    if isinstance(targets, list):
        return {str(t.get("name", i)): t for i, t in enumerate(targets)}
    return dict(targets)


def relations_rows(report: Dict, modalities: List[str]) -> List[Tuple[str, List[Optional[float]], float]]:
    """Rows (target, [share per modality or None], volume in ml) for the relations table."""
    rows = []
    for target, entry in report_targets(report).items():
        shares = entry.get("contributions", {}) or {}
        values = [float(shares[m]) if m in shares and shares[m] is not None else None for m in modalities]
        rows.append((target, values, float(entry.get("volume_ml", 0.0) or 0.0)))
    return rows


def report_warnings(report: Dict) -> List[str]:
    warnings = list(report.get("warnings", []))
    for target, entry in report_targets(report).items():
        warnings += [f"{target}: {w}" for w in entry.get("warnings", [])]
    return warnings


def format_share(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.0f}%"
