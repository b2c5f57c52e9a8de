"""Segments and targets: the order in which a result replaces the segments of an existing
segmentation, which segments match the model's targets, and the order in which the targets'
segments make the model's label map (to add a corrected case to the training cases).

Replacing segments: the user may have made or loaded the segmentation with closed surface as
its source representation. ``RemoveAllSegments`` keeps the source representation, and importing
a label map into a segmentation whose source is not binary labelmap fails
(``vtkSlicerSegmentationsModuleLogic``: "Source representation ... is not binary labelmap"),
which would leave the user with no segments at all. So the new segments are built in a temporary
segmentation first, and only once they exist is the source representation set to binary labelmap
and are the old segments replaced (``replace_steps``).

Plain Python on the standard library, tested outside Slicer; the arrays themselves are handled
in ``trainingcases`` (the label map) and ``compare`` (Dice).
"""

from typing import List, Mapping, Sequence

# vtkSegmentationConverter::GetBinaryLabelmapRepresentationName(), the same from 5.8 to 5.13
BINARY_LABELMAP = "Binary labelmap"

# The steps of loading a result into a segmentation, by name; the glue carries them out in order.
READ_LABEL_MAP = "read the label map"
BUILD_SEGMENTS = "build the new segments in a temporary segmentation"
SET_SOURCE = "set the source representation to binary labelmap"
REMOVE_OLD = "remove the old segments"
COPY_NEW = "copy the new segments in"


def replace_steps(source_representation: str) -> List[str]:
    """The order in which a result replaces a segmentation's segments.

    Args:
        source_representation: the segmentation's source representation now
            (``vtkSegmentation.GetSourceRepresentationName()``; '' for a new segmentation).

    Nothing of the user's is removed before the new segments exist; the source representation
    is binary labelmap before anything is imported into the user's segmentation.
    """
    steps = [READ_LABEL_MAP, BUILD_SEGMENTS]
    if source_representation != BINARY_LABELMAP:
        steps.append(SET_SOURCE)
    return steps + [REMOVE_OLD, COPY_NEW]


class SegmentError(ValueError):
    """A segmentation cannot become the model's label map; the message names what to change."""


def unknown_segments(segment_names: Sequence[str], targets: Sequence[str]) -> List[str]:
    """The segment names that match no target of the model (exact names, as the results are
    named), in the segmentation's order."""
    return [name for name in segment_names if name not in targets]


def paint_order(targets: Sequence[Mapping]) -> List[Mapping]:
    """The order in which the targets' segments are painted into a label map: the widest region
    first, so a nested target's label overwrites the one around it and the regions read back
    from the label map (``includes``) are the segments again (BraTS: WT, then TC, then ET)."""
    return sorted(targets, key=lambda t: -len(t["includes"]))
