"""Bringing the worker's outputs into the scene: segmentation, heat maps, relations table.

The plain functions (segment specs, heat-map names, relations rows, terminology strings) are
tested outside Slicer; the ``load*``/``show*`` functions need Slicer and import it lazily.
"""

import json
import os
import re
from typing import Dict, List, Optional, Tuple

HEAT_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeInferno", "vtkMRMLPETProceduralColorNodePET-Heat")
HEAT_LOWER_THRESHOLD = 0.1  # hide the faint floor of the map so the anatomy stays visible


def segment_specs(card: Dict) -> List[Dict]:
    """Per target: segment name, label value, the label values its region includes (targets
    nest: BraTS WT includes TC and ET, so segments overlap as the regions do), colour and
    terminology, in card order."""
    return [{"name": t["name"], "label": int(t["label"]),
             "includes": [int(v) for v in t.get("includes") or [t["label"]]],
             "color": list(t.get("color", [1, 0, 0])), "terminology": t.get("terminology")}
            for t in card.get("targets", [])]


def terminology_string(term: Optional[Dict]) -> str:
    """A Slicer terminology entry ('context~category~type~...') for a card's SCT code, '' if none."""
    if not term or not term.get("code"):
        return ""
    coded = f"{term.get('scheme', 'SCT')}^{term['code']}^{term.get('meaning', '')}"
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            f"~SCT^49755003^Morphologically Altered Structure~{coded}~^^"
            "~Anatomic codes - DICOM master list~^^~^^")


def heat_map_key(stem: str, modalities: List[str], targets: List[str]) -> str:
    """'flair' -> 'flair'; 'WT_flair' -> 'WT/flair' (per-target map). Names are matched against
    the card, since modality and target names may themselves contain underscores."""
    if stem in modalities:
        return stem
    for target in targets:
        if stem.startswith(target + "_") and stem[len(target) + 1:] in modalities:
            return f"{target}/{stem[len(target) + 1:]}"
    return stem


def heat_map_files(out_dir: str, modalities: List[str], targets: List[str]) -> Dict[str, str]:
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


# --- Slicer side ---------------------------------------------------------------------------

def placeNextTo(node, reference, folderName: str = "") -> None:
    """Put node in the subject hierarchy beside reference (in a sub-folder if named)."""
    import slicer

    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    parent = sh.GetItemParent(sh.GetItemByDataNode(reference))
    if folderName:
        folder = sh.GetItemChildWithName(parent, folderName) or sh.CreateFolderItem(parent, folderName)
        parent = folder
    sh.SetItemParent(sh.GetItemByDataNode(node), parent)


def loadSegmentation(path: str, card: Dict, segmentation, reference) -> None:
    """Fill ``segmentation`` from the label map: one segment per target, named and coloured."""
    import numpy as np
    import slicer

    labelmap = slicer.util.loadLabelVolume(path, {"show": False})
    try:
        segmentation.GetSegmentation().RemoveAllSegments()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        segmentation.CreateDefaultDisplayNodes()
        labels = slicer.util.arrayFromVolume(labelmap)
        for spec in segment_specs(card):
            segmentId = segmentation.GetSegmentation().AddEmptySegment(spec["name"], spec["name"], spec["color"])
            segment = segmentation.GetSegmentation().GetSegment(segmentId)
            if spec["terminology"]:
                segment.SetTerminology(terminology_string(spec["terminology"]))
            mask = np.isin(labels, spec["includes"]).astype("uint8")
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, labelmap)
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)
    placeNextTo(segmentation, reference)


def loadHeatMaps(out_dir: str, card: Dict, reference, baseName: str) -> Dict[str, object]:
    """Each cam file as a scalar volume with a heat colour map, window 0..1, hidden at first."""
    import slicer

    nodes = {}
    for key, path in heat_map_files(
            out_dir, [m["name"] for m in card["modalities"]], [t["name"] for t in card["targets"]]).items():
        node = slicer.util.loadVolume(path, {"name": f"{baseName} heat map {key}", "show": False})
        display = node.GetScalarVolumeDisplayNode()
        for colorId in HEAT_COLOR_NODE_IDS:
            if slicer.mrmlScene.GetNodeByID(colorId):
                display.SetAndObserveColorNodeID(colorId)
                break
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetApplyThreshold(True)
        display.SetLowerThreshold(HEAT_LOWER_THRESHOLD)
        display.SetUpperThreshold(1.0)
        node.SetAttribute("CIMLSegmentation.HeatMap", key)  # keeps it out of the input choices
        placeNextTo(node, reference, f"{baseName} heat maps")
        nodes[key] = node
    return nodes


def showHeatMap(heatMap, reference, opacity: float) -> None:
    """Show a heat map as the foreground over the reference volume (None hides it)."""
    import slicer

    slicer.util.setSliceViewerLayers(background=reference, foreground=heatMap,
                                     foregroundOpacity=opacity if heatMap else 0.0)


def relationsTableNode(rows, modalities: List[str], name: str):
    """A table node: one row per target, one column per modality's share (0..1), volume in ml."""
    import slicer
    import vtk

    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    targetColumn = vtk.vtkStringArray()
    targetColumn.SetName("target")
    columns = [targetColumn]
    for title in modalities + ["volume_ml"]:
        column = vtk.vtkDoubleArray()
        column.SetName(title)
        columns.append(column)
    for target, values, volume in rows:
        targetColumn.InsertNextValue(target)
        for column, value in zip(columns[1:], values + [volume]):
            column.InsertNextValue(float("nan") if value is None else value)
    for column in columns:
        table.AddColumn(column)
    return table


def relationsChart(table, modalities: List[str], name: str):
    """A bar chart of the modality shares per target, from the relations table."""
    import slicer

    chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle("Modality contributions")
    chart.SetYAxisTitle("share of the heat-map mass")
    for modality in modalities:
        series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {modality}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("target")
        series.SetYColumnName(modality)
        series.SetPlotType(series.PlotTypeBar)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
