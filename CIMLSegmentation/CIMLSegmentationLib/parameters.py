"""The module's parameter node, saved with the scene.

``parameterNodeWrapper`` writes a field into the MRML node whenever it is assigned (and its
default when the node is first wrapped), bound to a widget or not, so every field below is saved
with the scene. Four are bound in the .ui (``SlicerParameterName``); the panel writes the other
two itself: ``modelPath`` (the model combo lists display names, its data holds the path) and
``device`` (the combo shows readable labels, which the wrapper's Choice binding would replace by
the raw values).

The input volumes are one per modality of the chosen model, so their number and names change
with the model. The wrapper declares fixed fields, so the inputs are kept as MRML node
references on the same node, one role per modality (``naming.input_role``: "input_flair"): they
are saved with the scene and cleared by Slicer when a volume is deleted.

Slicer-only: imports slicer at the top; the device choices come from ``ciml.choices``.
"""

from typing import Annotated, Optional

from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from ciml.choices import DEVICES

from .naming import input_role


@parameterNodeWrapper
class CIMLSegmentationParameterNode:
    modelPath: str = ""
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    computeHeatMaps: bool = True
    heatMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    trainingSteps: Annotated[int, WithinRange(1, 1000000)] = 200


def inputVolume(parameters, modality: str) -> Optional[vtkMRMLScalarVolumeNode]:
    return parameters.parameterNode.GetNodeReference(input_role(modality))


def setInputVolume(parameters, modality: str, volume) -> None:
    parameters.parameterNode.SetNodeReferenceID(input_role(modality), volume.GetID() if volume else None)


def inputVolumes(parameters, modalities) -> dict:
    """{modality: volume node or None} for the model's modalities."""
    return {m: inputVolume(parameters, m) for m in modalities}
