"""Writing the input volumes for the worker, never touching the user's nodes.

Every volume goes to a temporary .nrrd through ``slicer.util.exportNode``, which writes a copy
made in a temporary scene and leaves the node's own storage node alone. (``saveNode`` would not:
``qSlicerNodeWriter::write`` reuses the node's storage node, points it at the temporary file,
turns compression off and marks the volume saved, so after the job removed its folder the user's
volume would point to a deleted file with its unsaved edits counted as saved.)

A volume file holds no parent transform, so every volume is exported in world space
(``world=True``): the worker reads the image where the views show it, and the results (on the
reference's world grid) land there too. The worker reads the outputs on the reference modality's
grid; an input whose grid differs from the reference volume's is resampled onto it here, in
physical space, assuming the volumes are already co-registered (a note says so in the log). The
plan needs the world grid of an input under a transform, and the resampling module ignores
parent transforms, so such an input is first copied into a hidden node with the transform
hardened. Temporary nodes never outlive the export.

Slicer-only: imports slicer and vtk at the top, so it is imported only by the segmentation job
and the training cases. The plan (what is hardened, what is resampled, the notes, the file names
and write properties) is plain Python in ``geometry``.
"""

import contextlib
import logging
from typing import Dict, List, Tuple

import slicer
import vtk
from slicer.i18n import tr as _

from ..geometry import export_plan, geometry, input_paths, write_properties


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


def writeCopy(node, path: str, properties: Dict) -> bool:
    """Write ``node`` to ``path`` as a copy in world space; its storage node is never touched.
    exportNode raises ValueError for an extension no writer knows, and adds "fileFormat" to the
    dict it is given, so each call gets its own (``geometry.write_properties``)."""
    try:
        return bool(slicer.util.exportNode(node, path, properties, world=True))
    except ValueError as exc:
        logging.error("CIML Segmentation: %s", exc)
        return False


@contextlib.contextmanager
def onReferenceGrid(volumes: Dict, reference: str):
    """Yield ({modality: node on the reference's world grid}, notes for the log): the user's
    volume itself, or a hidden temporary copy (transform hardened, resampled) that is removed
    when the block ends, whatever happens."""
    problems = [p for p in (checkUsable(m, v) for m, v in volumes.items()) if p]
    if problems:
        raise ValueError("\n".join(problems))
    temporary = []
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
        onGrid = {}
        for modality, node in world.items():
            if resample[modality]:
                node = resampleOnto(node, world[reference])
                temporary.append(node)
            onGrid[modality] = node
        yield onGrid, notes
    finally:
        for node in temporary:
            slicer.mrmlScene.RemoveNode(node)


def exportInputs(volumes: Dict, reference: str, folder: str) -> Tuple[Dict[str, str], List[str]]:
    """Write {modality: volume} to folder; returns ({modality: path}, notes for the log)."""
    with onReferenceGrid(volumes, reference) as (onGrid, notes):
        paths = input_paths(folder, list(onGrid))
        for modality, node in onGrid.items():
            if not writeCopy(node, paths[modality], write_properties()):
                raise RuntimeError(_("{modality}: '{name}' could not be written to {path}").format(
                    modality=modality, name=volumes[modality].GetName(), path=paths[modality]))
    return paths, notes
