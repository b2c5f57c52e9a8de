"""What the worker's outputs mean, as plain data: segment specs from the card, their Slicer
terminology entries, heat-map file names, report.json and its relations rows, warnings, share
texts and the relations chart's colours.

Plain Python, tested outside Slicer; imports only ``ciml.config`` (no torch, no numpy).
``results`` puts these outputs into the Slicer scene.
"""

import colorsys
import functools
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ciml.config import ModelCard

from .naming import ANATOMIC_CONTEXT, DICOM_TERMINOLOGY_CONTEXT, TERMINOLOGY_FILE

# The category Slicer's DICOM master list gives most lesion codes; used for a code the shipped
# terminology does not list, whose category the card does not say.
ALTERED_STRUCTURE = "SCT^49755003^Morphologically Altered Structure"
# Okabe-Ito: distinct for the common colour-vision deficiencies, and none of them black or white
# (a plot series is black unless given a colour).
CHART_COLORS = ((0.902, 0.624, 0.0), (0.337, 0.706, 0.914), (0.0, 0.620, 0.451), (0.941, 0.894, 0.259),
                (0.0, 0.447, 0.698), (0.835, 0.369, 0.0), (0.800, 0.475, 0.655))


def segment_specs(card: ModelCard) -> List[Dict]:
    """Per target: segment name, label value, the label values its region includes (targets
    nest: BraTS WT includes TC and ET, so segments overlap as the regions do), colour and
    terminology, in card order."""
    return [{"name": t.name, "label": t.label, "includes": list(t.includes), "color": list(t.color),
             "terminology": t.terminology}
            for t in card.targets]


@functools.lru_cache(maxsize=None)
def read_terminology(path: str = TERMINOLOGY_FILE) -> Tuple[str, Dict[Tuple[str, str], Tuple[str, str]]]:
    """A Slicer terminology file (segment-context JSON) as (context name, {(scheme, code):
    (category, type)}), each coded as 'scheme^code^meaning', the way an entry string writes it.
    A code listed under two categories keeps the first."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    codes: Dict[Tuple[str, str], Tuple[str, str]] = {}
    for category in doc["SegmentationCodes"]["Category"]:
        for kind in category.get("Type", []):
            codes.setdefault((kind["CodingSchemeDesignator"], kind["CodeValue"]), (_coded(category), _coded(kind)))
    return doc["SegmentationCategoryTypeContextName"], codes


def _coded(item: Dict) -> str:
    return f"{item['CodingSchemeDesignator']}^{item['CodeValue']}^{item['CodeMeaning']}"


def terminology_string(term: Optional[Dict], terminology_file: str = TERMINOLOGY_FILE) -> str:
    """The Slicer terminology entry ('context~category~type~modifier~anatomic context~region~region
    modifier') for a card target's coded meaning ({scheme, code, meaning}); '' if it has none.

    A code the shipped terminology lists takes that file's context, category and meaning (so a
    lymph node is a tissue, a neoplasm an altered structure); any other code is written as the card
    gives it, in Slicer's DICOM master list context as an altered structure. No anatomic region:
    the card does not say where the target lies."""
    if not term or not term.get("code"):
        return ""
    scheme, code = _plain(term.get("scheme") or "SCT"), _plain(term["code"])
    try:
        context, codes = read_terminology(terminology_file)
    except (OSError, ValueError, KeyError, TypeError):  # a damaged install: the card's codes still serve
        context, codes = "", {}
    if (scheme, code) in codes:
        category, kind = codes[(scheme, code)]
    else:
        context, category, kind = DICOM_TERMINOLOGY_CONTEXT, ALTERED_STRUCTURE, \
            f"{scheme}^{code}^{_plain(term.get('meaning', ''))}"
    return f"{context}~{category}~{kind}~^^~{ANATOMIC_CONTEXT}~^^~^^"


def _plain(text: str) -> str:
    """A card's text without the separators of an entry string, which would split it wrongly."""
    return re.sub(r"[~^|]", " ", str(text)).strip()


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


def chart_colors(count: int) -> List[Tuple[float, float, float]]:
    """One distinct RGB colour (0..1) per chart series: the palette first, then evenly spaced
    hues (golden-ratio steps) for series beyond it."""
    colors = list(CHART_COLORS[:count])
    for i in range(count - len(colors)):
        colors.append(tuple(round(c, 3) for c in colorsys.hsv_to_rgb((0.13 + 0.618034 * i) % 1.0, 0.75, 0.85)))
    return colors


def index_legend(names: Sequence[str]) -> str:
    """'0: WT, 1: TC, 2: ET': a bar chart's axis counts its bars from 0 (Slicer's plot view
    does not write the label column on the axis), so its title says which bar is which."""
    return ", ".join(f"{i}: {name}" for i, name in enumerate(names))
