"""What the worker's outputs mean, as plain data: segment specs from the card, their Slicer
terminology entries, the effect and heat-map files, report.json and its relations rows (shares,
absent modalities, what segmenting without each one changes), warnings, the relations table's
cell texts and the chart's colours.

Plain Python, tested outside Slicer; imports only ``ciml.config`` (no torch, no numpy).
``results`` puts these outputs into the Slicer scene.
"""

import colorsys
import functools
import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ciml.config import ModelCard

from .naming import ANATOMIC_CONTEXT, DICOM_TERMINOLOGY_CONTEXT, TERMINOLOGY_FILE

# The category Slicer's DICOM master list gives most lesion codes; used for a code the shipped
# terminology does not list, whose category the card does not say.
ALTERED_STRUCTURE = "SCT^49755003^Morphologically Altered Structure"
# A modality the run was not given, as report.json writes it under "effects".
ABSENT = "absent"
EFFECT_PREFIX = "effect "  # keys of effect maps (a modality name holds no space)
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


def map_keys(names: Sequence[str], modalities: Sequence[str], targets: Sequence[str]) -> Dict[str, str]:
    """{key: file name} for the map files among ``names``: effect maps first ('effect flair',
    'effect WT/flair' from effect_*), then Grad-CAM maps ('flair', 'WT/flair' from cam_*: the keys
    they have always had, which scenes saved earlier carry); per kind, the maps of all targets in
    the card's modality order, then the per-target ones. ``map_title`` names them for the user."""
    found: Dict[str, Tuple[Tuple, str]] = {}
    for name in names:
        match = re.match(r"^(effect|cam)_(.+?)\.(nrrd|nii\.gz|nii)$", name)
        if not match:
            continue
        key = heat_map_key(match.group(2), modalities, targets)
        target, _slash, modality = key.rpartition("/")
        order = (match.group(1) != "effect", bool(target), list(targets).index(target) if target in targets else -1,
                 list(modalities).index(modality) if modality in modalities else len(modalities), key)
        found[EFFECT_PREFIX + key if match.group(1) == "effect" else key] = (order, name)
    return {key: name for key, (order, name) in sorted(found.items(), key=lambda item: item[1][0])}


def heat_map_files(out_dir: str, modalities: Sequence[str], targets: Sequence[str]) -> Dict[str, str]:
    """{key: path} of the effect and Grad-CAM maps the worker wrote into ``out_dir`` (``map_keys``)."""
    return {key: os.path.join(out_dir, name)
            for key, name in map_keys(os.listdir(out_dir), modalities, targets).items()}


def is_effect_map(key: str) -> bool:
    return key.startswith(EFFECT_PREFIX)


def map_title(key: str) -> str:
    """What the panel lists: 'effect flair' as it is, a Grad-CAM key as 'Grad-CAM flair'."""
    return key if is_effect_map(key) else "Grad-CAM " + key


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


def relations_rows(report: Dict, modalities: List[str], absent: Optional[Sequence[str]] = None
                   ) -> List[Tuple[str, List[object], float]]:
    """Rows (target, [share per modality], volume in ml) for the relations table. A share is a
    float, ``ABSENT`` for a modality the run was not given (``absent``, by default the report's
    list), or None where the report has none (a run without maps)."""
    absent = set(report.get("absent", []) if absent is None else absent)
    rows = []
    for target, entry in report_targets(report).items():
        shares = entry.get("contributions", {}) or {}
        values = [ABSENT if m in absent else float(shares[m]) if shares.get(m) is not None else None
                  for m in modalities]
        rows.append((target, values, float(entry.get("volume_ml", 0.0) or 0.0)))
    return rows


def effect_details(report: Dict, modalities: List[str], absent: Optional[Sequence[str]] = None
                   ) -> Dict[str, List[object]]:
    """{target: per modality, what segmenting without it changes}: {'volume_change_ml',
    'dice_without'} (floats), ``ABSENT``, or None where the report has no effects (a run with
    Grad-CAM or no maps only)."""
    absent = set(report.get("absent", []) if absent is None else absent)
    details = {}
    for target, entry in report_targets(report).items():
        effects = entry.get("effects", {}) or {}
        row = []
        for m in modalities:
            effect = effects.get(m)
            if m in absent or effect == ABSENT:
                row.append(ABSENT)
            elif isinstance(effect, dict) and effect.get("volume_change_ml") is not None \
                    and effect.get("dice_without") is not None:
                row.append({"volume_change_ml": float(effect["volume_change_ml"]) + 0.0,  # no -0.0
                            "dice_without": float(effect["dice_without"])})
            else:
                row.append(None)
        details[target] = row
    return details


def relation_cell(target: str, modality: str, share, detail, source: Optional[str] = "effects") -> Tuple[str, str]:
    """(text, tooltip) of one cell of the relations table: the share, and under it what
    segmenting without the modality changes (the target's volume, the Dice between the target
    with and without it); 'absent' for a modality the run did not have. ``source``: the report's
    ``contributions_from``."""
    if share == ABSENT or detail == ABSENT:
        return "absent", f"{modality} was not given: this run segmented {target} without it."
    lines, tips = [], []
    if isinstance(share, float):
        lines.append(format_share(share))
        tips.append(f"{modality} for {target}: {format_share(share)} of " + (
            "the first-order (Grad-CAM) estimates of withholding each modality, summed over the body." if source == "gradcam" else
            "what withholding each modality changes (the summed change of the target's probability)."))
    if isinstance(detail, dict):
        change, dice = detail["volume_change_ml"], detail["dice_without"]
        lines += ["no change"] if change == 0 and dice == 1 else [f"{change:+.1f} ml", f"Dice {dice:.2f}"]
        how = ("is unchanged in volume" if change == 0 else
               f"{'grows' if change > 0 else 'shrinks'} by {abs(change):.1f} ml")
        tips.append(f"Segmented without {modality}, {target} {how}; the Dice between {target} with and without "
                    f"{modality} is {dice:.2f} (1.00: the same region).")
    return "\n".join(lines), " ".join(tips)


class TableCell(NamedTuple):
    """One cell of a table the panel shows, as plain values for any Qt binding's QTableWidget."""

    text: str
    tooltip: str = ""
    centred: bool = False


class RelationsTable(NamedTuple):
    """The *Modality relations* table as plain values.

    Args:
        header: the column titles: the target's, one per modality, the volume's.
        cells: per target, its row of cells in the header's columns.
        rows: the ``relations_rows`` the cells were made from (for ``first_map``).
    """

    header: List[str]
    cells: List[List[TableCell]]
    rows: List[Tuple[str, List[object], float]]


def relations_table(report: Dict, modalities: List[str], absent: Optional[Sequence[str]] = None,
                    target_header: str = "Target", volume_header: str = "ml") -> RelationsTable:
    """The relations table of ``report``: per target, the target, one ``relation_cell`` per
    modality (centred, with its tooltip) and the target's volume in ml. Slicer's panel and the
    panel picture both fill their QTableWidget from this.

    Args:
        report: the worker's ``report.json``, read.
        modalities: the model's modalities, in card order (the columns).
        absent: the modalities the run was not given (default: the report's ``absent``).
        target_header, volume_header: the first and last column titles (the panel translates them).
    """
    rows = relations_rows(report, modalities, absent)
    details = effect_details(report, modalities, absent)
    source = report.get("contributions_from", "effects")
    cells = []
    for target, shares, volume in rows:
        row = [TableCell(target)]
        for modality, share, detail in zip(modalities, shares, details[target]):
            row.append(TableCell(*relation_cell(target, modality, share, detail, source), centred=True))
        cells.append(row + [TableCell(f"{volume:.1f}")])
    return RelationsTable([target_header] + list(modalities) + [volume_header], cells, rows)


def fill_table(table, content: RelationsTable, item_type, centre) -> None:
    """Put ``content`` into a QTableWidget: Slicer's ``qt`` and PySide6 both, so the binding's
    item class and centre alignment come in as arguments (this half never imports Qt).

    Args:
        table: the QTableWidget.
        content: what :func:`relations_table` returns.
        item_type: the binding's ``QTableWidgetItem``.
        centre: the binding's ``Qt.AlignCenter``.
    """
    table.setColumnCount(len(content.header))
    table.setHorizontalHeaderLabels(content.header)
    table.setRowCount(len(content.cells))
    for r, row in enumerate(content.cells):
        for c, cell in enumerate(row):
            item = item_type(cell.text)
            item.setToolTip(cell.tooltip)
            if cell.centred:
                item.setTextAlignment(centre)
            table.setItem(r, c, item)


def first_map(keys: Sequence[str], rows: List[Tuple[str, List[object], float]], modalities: Sequence[str]) -> str:
    """The map the panel shows first: that of the modality with the largest share for the first
    target (its effect map, else its Grad-CAM map), else the first map; '' when there is none."""
    if rows:
        shares = [(s, m) for m, s in zip(modalities, rows[0][1]) if isinstance(s, float)]
        if shares:
            best = max(shares)[1]
            for key in (EFFECT_PREFIX + best, best):
                if key in keys:
                    return key
    return keys[0] if keys else ""


def report_warnings(report: Dict) -> List[str]:
    warnings = list(report.get("warnings", []))
    for target, entry in report_targets(report).items():
        warnings += [f"{target}: {w}" for w in entry.get("warnings", [])]
    return warnings


def format_share(value) -> str:
    if value == ABSENT:
        return ABSENT
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
