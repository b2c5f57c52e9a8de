"""Writing the input volumes for the worker.

Every volume goes to a temporary .nrrd. The worker reads the outputs on the reference modality's
grid; an input whose grid differs from the reference volume's is resampled onto it here, in
physical space, assuming the volumes are already co-registered (a note says so in the log).

Slicer-only: imports slicer and vtk at the top, so it is imported only by the segmentation job.
Comparing grids is plain Python in ``geometry``.
"""

import logging
import os
from typing import Dict, List, Tuple

import slicer
import vtk

from .geometry import geometry, geometry_differs


def volumeGeometry(volume) -> Dict:
    """The grid of a Slicer volume node, as geometry() values."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASDirectionMatrix(matrix)
    directions = [[matrix.GetElement(r, c) for c in range(3)] for r in range(3)]
    return geometry(volume.GetOrigin(), volume.GetSpacing(), directions,
                    volume.GetImageData().GetDimensions())


def checkUsable(modality: str, volume) -> str:
    """A message when a volume cannot be used ('' when it can): empty, not 3D, vector-valued."""
    image = volume.GetImageData() if volume else None
    if image is None:
        return f"{modality}: the volume has no image data."
    dims = image.GetDimensions()
    if min(dims) < 2:
        return f"{modality}: '{volume.GetName()}' is not a 3D volume (size {dims})."
    if image.GetNumberOfScalarComponents() != 1:
        return f"{modality}: '{volume.GetName()}' has {image.GetNumberOfScalarComponents()} components; a scalar volume is needed."
    return ""


def resampleOnto(volume, reference):
    """A new hidden volume: ``volume`` resampled (linear) onto ``reference``'s grid."""
    output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", volume.GetName() + "_resampled")
    output.SetHideFromEditors(True)
    parameters = {"inputVolume": volume.GetID(), "outputVolume": output.GetID(),
                  "referenceVolume": reference.GetID(), "interpolationType": "linear"}
    result = slicer.cli.runSync(slicer.modules.resamplescalarvectordwivolume, None, parameters)
    if result.GetStatus() & result.ErrorsMask:
        slicer.mrmlScene.RemoveNode(output)
        raise RuntimeError(f"resampling '{volume.GetName()}' failed: {result.GetErrorText()}")
    slicer.mrmlScene.RemoveNode(result)
    return output


def exportInputs(volumes: Dict, reference: str, folder: str) -> Tuple[Dict[str, str], List[str]]:
    """Write {modality: volume} to folder; returns ({modality: path}, notes for the log)."""
    problems = [p for p in (checkUsable(m, v) for m, v in volumes.items()) if p]
    if problems:
        raise ValueError("\n".join(problems))
    reference_node = volumes[reference]
    reference_grid = volumeGeometry(reference_node)
    paths, notes = {}, []
    for modality, volume in volumes.items():
        node, temporary = volume, False
        if modality != reference and geometry_differs(volumeGeometry(volume), reference_grid):
            notes.append(f"{modality} ('{volume.GetName()}') resampled onto the grid of {reference} "
                         f"('{reference_node.GetName()}'); the volumes are assumed co-registered.")
            logging.info(notes[-1])
            node, temporary = resampleOnto(volume, reference_node), True
        path = os.path.join(folder, f"{modality}.nrrd")
        try:
            if not slicer.util.saveNode(node, path, {"useCompression": 0}):
                raise RuntimeError(f"{modality}: '{volume.GetName()}' could not be written to {path}")
        finally:
            if temporary:
                slicer.mrmlScene.RemoveNode(node)
        paths[modality] = path
    return paths, notes
