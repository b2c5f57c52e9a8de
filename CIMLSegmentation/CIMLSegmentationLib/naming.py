"""The names this module gives to things in Slicer's scene: node-reference roles of the inputs,
the attributes that mark its output volumes, the colour tables it shows them with, and its
terminology context.

Plain Python, tested outside Slicer (no imports beyond the standard library): the Slicer-only
``parameters`` and ``results`` use these names, and the tests check them against the index of
Slicer's API at every supported version.
"""

import os
import re
from typing import Callable, Iterable, Optional

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


def first_available(ids: Iterable[str], exists: Callable[[str], object]) -> Optional[str]:
    """The first ID for which ``exists`` (e.g. ``scene.GetNodeByID``) is truthy, else None."""
    return next((i for i in ids if exists(i)), None)


# --- terminology ------------------------------------------------------------------------------
TERMINOLOGY_CONTEXT = "Segmentation category and type - CIML Segmentation"
TERMINOLOGY_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                                "Terminology", "SegmentationCategoryTypeModifier-CIMLSegmentation.term.json")
# Codes the shipped file does not list are written in Slicer's DICOM master list context.
DICOM_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
