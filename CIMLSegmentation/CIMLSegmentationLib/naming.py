"""The names this module gives to things in Slicer's scene: node-reference roles of the inputs
(and the modalities set to "none"), the attributes that mark its output volumes, the colour
tables it shows them with (and the effect map's transparent middle), new segmentations' names,
and its terminology context.

Plain Python, tested outside Slicer (no imports beyond the standard library): the glue's
``slicerglue.parameters`` and ``slicerglue.results`` use these names, and the tests check them
against the index of Slicer's API at every supported version.
"""

import os
import re
from typing import Callable, Iterable, List, Optional, Sequence

# --- input volumes: node references on the parameter node -----------------------------------
# MRML saves references as "role:id id;role:id;" and reads the role back up to the first ':'
# (vtkMRMLNode::ParseReferencesAttribute), so a role holds no ':', ';', space or brace. Roles of
# the earlier "input:<modality>" form never survived a save and reopen, so there is nothing to
# migrate from saved scenes.
INPUT_ROLE_PREFIX = "input_"
_MODALITY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # what the model card accepts as a modality name


def input_role(modality: str) -> str:
    """'flair' -> 'input_flair': the parameter node's reference role for a modality's volume."""
    if not isinstance(modality, str) or not _MODALITY.match(modality):
        raise ValueError(f"not a modality name: {modality!r} (a letter, then letters, digits, _ or -)")
    return INPUT_ROLE_PREFIX + modality


# Modalities the user set to "none", kept on the parameter node (value: names separated by spaces,
# which a modality name never holds), so the panel does not pre-select them again from the names.
DECLINED_INPUTS_ATTRIBUTE = "CIMLSegmentation.NoInput"


def declined_inputs(value: Optional[str]) -> List[str]:
    return (value or "").split()


def declined_value(modalities: Iterable[str]) -> str:
    return " ".join(sorted(set(modalities)))


def role_modality(role: str) -> Optional[str]:
    """'input_flair' -> 'flair'; None for a role that is not an input's."""
    if not role.startswith(INPUT_ROLE_PREFIX):
        return None
    modality = role[len(INPUT_ROLE_PREFIX):]
    return modality if _MODALITY.match(modality) else None


# --- output volumes: kept out of the input selectors ----------------------------------------
# Set on every volume the module creates, before the volume enters the scene, so that a node
# selector sees it marked as soon as it is added.
OUTPUT_ATTRIBUTE = "CIMLSegmentation.Output"
OUTPUT_HEAT_MAP = "heat map"  # values of OUTPUT_ATTRIBUTE
OUTPUT_EFFECT_MAP = "effect map"
# Heat maps of scenes saved by earlier versions carry only this one (value: the map's key).
HEAT_MAP_KEY_ATTRIBUTE = "CIMLSegmentation.HeatMap"


def is_output_volume(get_attribute: Callable[[str], Optional[str]]) -> bool:
    """Whether a volume is one of this module's outputs, from its ``GetAttribute``."""
    return bool(get_attribute(OUTPUT_ATTRIBUTE) or get_attribute(HEAT_MAP_KEY_ATTRIBUTE))


# --- colour tables ---------------------------------------------------------------------------
# Node IDs as vtkMRMLColorLogic::GetFileColorNodeID makes them for the colour files Slicer ships
# ("vtkMRMLColorTableNodeFile" + file name). Each list is tried in order; the last entry is built
# into Slicer's code rather than read from a file, so it is there even where a colour file failed
# to load. Every ID exists in Slicer 5.8 to 5.13 (checked against the API index by the tests).
# Sequential, dark to bright, for maps in 0..1 (Grad-CAM heat maps).
HEAT_MAP_COLOR_IDS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLPETProceduralColorNodePET-Heat")
# Diverging, blue through white to red, for signed maps centred on 0 (effect maps).
EFFECT_MAP_COLOR_IDS = ("vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "vtkMRMLColorTableNodeFMRI")


# Effect maps are shown over a window of -1..1 centred on 0, and |effect| below the floor is
# hidden. Slicer's threshold shows one range [lower, upper] and cannot hide the middle of a
# signed map, so the map gets its own copy of the diverging table with the entries inside the
# floor transparent (the slice view takes a colour table's alpha: vtkMRMLScalarVolumeDisplayNode).
EFFECT_WINDOW = (-1.0, 1.0)
EFFECT_FLOOR = 0.05
EFFECT_TABLE_NAME = "CIMLSegmentation effect map colours"


def transparent_entries(count: int, floor: float = EFFECT_FLOOR, window: Sequence[float] = EFFECT_WINDOW) -> List[int]:
    """The entries of a ``count``-entry colour table spread over ``window`` whose values lie
    within ``floor`` of 0 (each entry stands for the middle of its share of the window)."""
    low, high = window
    return [i for i in range(count) if abs(low + (high - low) * (i + 0.5) / count) < floor]


def first_available(ids: Iterable[str], exists: Callable[[str], object]) -> Optional[str]:
    """The first ID for which ``exists`` (e.g. ``scene.GetNodeByID``) is truthy, else None."""
    return next((i for i in ids if exists(i)), None)


# --- segmentations ------------------------------------------------------------------------------
def segmentation_name(reference: str, model: str, absent: Sequence[str] = ()) -> str:
    """The name of a new segmentation: 'BraTS-sample-000_t1ce brats-sample segmentation', with
    ' without flair' when modalities were left out, so a rerun without one never takes the name
    of the segmentation beside it."""
    return f"{reference} {model} segmentation" + (f" without {', '.join(absent)}" if absent else "")


# --- terminology ------------------------------------------------------------------------------
TERMINOLOGY_CONTEXT = "Segmentation category and type - CIML Segmentation"
TERMINOLOGY_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                                "Terminology", "SegmentationCategoryTypeModifier-CIMLSegmentation.term.json")
# Codes the shipped file does not list are written in Slicer's DICOM master list context.
DICOM_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
