"""Writing the input volumes for the worker.

Every volume goes to a temporary .nrrd. A volume file holds no parent transform, so an input
under one is written as a hidden copy with the transform hardened: the worker reads the image
where the views show it, and the results (on the reference's world grid) land there too. The
worker reads the outputs on the reference modality's grid; an input whose grid differs from the
reference volume's is resampled onto it here, in physical space, assuming the volumes are
already co-registered (a note says so in the log). Temporary nodes never outlive the export.

Slicer-only: imports slicer and vtk at the top, so it is imported only by the segmentation job.
The plan (what is hardened, what is resampled, the notes) is plain Python in ``geometry``.
"""

import logging
import os
from typing import Dict, List, Tuple

import slicer
import vtk
from slicer.i18n import tr as _

from ..geometry import export_plan, geometry


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
        return _("{modality}: the volume has no image data.").format(modality=modality)
    dims = image.GetDimensions()
    if min(dims) < 2:
        return _("{modality}: '{name}' is not a 3D volume (size {size}).").format(
            modality=modality, name=volume.GetName(), size=dims)
    if image.GetNumberOfScalarComponents() != 1:
        return _("{modality}: '{name}' has {count} components; a scalar volume is needed.").format(
            modality=modality, name=volume.GetName(), count=image.GetNumberOfScalarComponents())
    return ""


def hardenedCopy(volume):
    """A new hidden volume: ``volume`` with its parent transform hardened (a linear transform
    moves the grid, a warping one resamples the voxels), the user's volume untouched."""
    copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", volume.GetName() + "_hardened")
    copy.SetHideFromEditors(True)
    copy.CopyOrientation(volume)
    image = vtk.vtkImageData()
    image.DeepCopy(volume.GetImageData())
    copy.SetAndObserveImageData(image)
    copy.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
    copy.HardenTransform()
    return copy


def resampleOnto(volume, reference):
    """A new hidden volume: ``volume`` resampled (linear) onto ``reference``'s grid."""
    output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", volume.GetName() + "_resampled")
    output.SetHideFromEditors(True)
    parameters = {"inputVolume": volume.GetID(), "outputVolume": output.GetID(),
                  "referenceVolume": reference.GetID(), "interpolationType": "linear"}
    cliNode = None
    try:
        # update_display=False: the default shows the output in the views and resets them
        cliNode = slicer.cli.runSync(slicer.modules.resamplescalarvectordwivolume, None, parameters,
                                     update_display=False)
        if cliNode is None:
            raise RuntimeError(_("the Resample Scalar/Vector/DWI Volume module could not run"))
        if cliNode.GetStatus() & cliNode.ErrorsMask:
            raise RuntimeError(_("resampling '{name}' failed: {error}").format(
                name=volume.GetName(), error=cliNode.GetErrorText()))
    except Exception:
        slicer.mrmlScene.RemoveNode(output)
        raise
    finally:
        if cliNode is not None:  # the CLI's parameter node is not the user's: never leave it behind
            slicer.mrmlScene.RemoveNode(cliNode)
    return output


def exportInputs(volumes: Dict, reference: str, folder: str) -> Tuple[Dict[str, str], List[str]]:
    """Write {modality: volume} to folder; returns ({modality: path}, notes for the log)."""
    problems = [p for p in (checkUsable(m, v) for m, v in volumes.items()) if p]
    if problems:
        raise ValueError("\n".join(problems))
    temporary = []  # hardened copies and resampled volumes, removed whatever happens
    try:
        world = {}
        for modality, volume in volumes.items():
            world[modality] = volume
            if volume.GetParentTransformNode() is not None:
                world[modality] = hardenedCopy(volume)
                temporary.append(world[modality])
        transforms = {m: v.GetParentTransformNode().GetName() if v.GetParentTransformNode() else ""
                      for m, v in volumes.items()}
        resample, notes = export_plan(reference, {m: v.GetName() for m, v in volumes.items()},
                                      {m: volumeGeometry(n) for m, n in world.items()}, transforms)
        for note in notes:
            logging.info(note)
        paths = {}
        for modality, node in world.items():
            if resample[modality]:
                node = resampleOnto(node, world[reference])
                temporary.append(node)
            path = os.path.join(folder, f"{modality}.nrrd")
            if not slicer.util.saveNode(node, path, {"useCompression": 0}):
                raise RuntimeError(_("{modality}: '{name}' could not be written to {path}").format(
                    modality=modality, name=volumes[modality].GetName(), path=path))
            paths[modality] = path
    finally:
        for node in temporary:
            slicer.mrmlScene.RemoveNode(node)
    return paths, notes
