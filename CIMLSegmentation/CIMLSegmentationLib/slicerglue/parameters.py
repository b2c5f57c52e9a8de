"""The module's parameter node, saved with the scene.

``parameterNodeWrapper`` writes a field into the MRML node whenever it is assigned (and its
default when the node is first wrapped), bound to a widget or not, so every field below is saved
with the scene. Five are bound in the .ui (``SlicerParameterName``: ``computeHeatMaps`` asks for
the effect maps and the relations, ``computeGradCam`` for Grad-CAM maps as well); the panel
writes the other two itself: ``modelPath`` (the model combo lists display names, its data holds the path) and
``device`` (the combo shows readable labels, which the wrapper's Choice binding would replace by
the raw values).

The input volumes are one per modality of the chosen model, so their number and names change
with the model. The wrapper declares fixed fields, so the inputs are kept as MRML node
references on the same node, one role per modality (``naming.input_role``: "input_flair"): they
are saved with the scene and cleared by Slicer when a volume is deleted. The modalities the user
set to "none" are an attribute of the same node (``naming.DECLINED_INPUTS_ATTRIBUTE``), so a
deliberate "none" is not pre-selected again from the volume names.

Slicer-only: imports slicer at the top; the device choices come from ``ciml.choices``.
"""

from typing import Annotated, Optional

from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

from ciml.choices import DEVICES

from ..naming import DECLINED_INPUTS_ATTRIBUTE, declined_inputs, declined_value, input_role


@parameterNodeWrapper
class CIMLSegmentationParameterNode:
    modelPath: str = ""
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    computeHeatMaps: bool = True
    computeGradCam: bool = False
    heatMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    trainingMinutes: Annotated[float, WithinRange(0.1, 10080.0)] = 30.0  # fine-tuning's time limit (a week at most)


def inputVolume(parameters, modality: str) -> Optional[vtkMRMLScalarVolumeNode]:
    return parameters.parameterNode.GetNodeReference(input_role(modality))


def setInputVolume(parameters, modality: str, volume) -> None:
    parameters.parameterNode.SetNodeReferenceID(input_role(modality), volume.GetID() if volume else None)


def inputVolumes(parameters, modalities) -> dict:
    """{modality: volume node or None} for the model's modalities."""
    return {m: inputVolume(parameters, m) for m in modalities}


def declinedInputs(parameters) -> list:
    """The modalities the user set to "none"."""
    return declined_inputs(parameters.parameterNode.GetAttribute(DECLINED_INPUTS_ATTRIBUTE))


def setInputDeclined(parameters, modality: str, declined: bool) -> None:
    names = set(declinedInputs(parameters)) - {modality}
    if declined:
        names.add(modality)
    parameters.parameterNode.SetAttribute(DECLINED_INPUTS_ATTRIBUTE, declined_value(names))
