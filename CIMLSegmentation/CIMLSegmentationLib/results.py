"""Bringing the worker's outputs into the Slicer scene: segmentation, heat maps, relations table
and chart.

Slicer-only: imports slicer, vtk and numpy (Slicer's own) at the top, so it is imported only by
the segmentation job and the panel. What the outputs mean is plain data in ``report``.
"""

from typing import Dict, List

import numpy as np
import slicer
import vtk

from ciml.config import ModelCard

from .report import heat_map_files, segment_specs, terminology_string

HEAT_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeInferno", "vtkMRMLPETProceduralColorNodePET-Heat")
HEAT_LOWER_THRESHOLD = 0.1  # hide the faint floor of the map so the anatomy stays visible


def placeNextTo(node, reference, folderName: str = "") -> None:
    """Put node in the subject hierarchy beside reference (in a sub-folder if named)."""
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    parent = sh.GetItemParent(sh.GetItemByDataNode(reference))
    if folderName:
        folder = sh.GetItemChildWithName(parent, folderName) or sh.CreateFolderItem(parent, folderName)
        parent = folder
    sh.SetItemParent(sh.GetItemByDataNode(node), parent)


def loadSegmentation(path: str, card: ModelCard, segmentation, reference) -> None:
    """Fill ``segmentation`` from the label map: one segment per target, named and coloured."""
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


def loadHeatMaps(out_dir: str, card: ModelCard, reference, baseName: str) -> Dict[str, object]:
    """Each cam file as a scalar volume with a heat colour map, window 0..1, hidden at first."""
    nodes = {}
    for key, path in heat_map_files(out_dir, card.modality_names, card.target_names).items():
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
    slicer.util.setSliceViewerLayers(background=reference, foreground=heatMap,
                                     foregroundOpacity=opacity if heatMap else 0.0)


def relationsTableNode(rows, modalities: List[str], name: str):
    """A table node: one row per target, one column per modality's share (0..1), volume in ml."""
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
