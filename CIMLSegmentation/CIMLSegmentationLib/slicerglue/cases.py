"""The training cases and the comparison, on the Slicer side: read the inputs and a segmentation
as arrays on the reference grid, hand them to the plain ``trainingcases`` (which writes the case)
and ``compare`` (which scores the models). Nothing of the scene changes: the volumes are read
(under a transform or on another grid, through the hidden temporary copies of ``export``, removed
afterwards), the segmentation is read through ``arrayFromSegmentBinaryLabelmap``.

Slicer-only: imports slicer at the top; imported by the module file and the panel.
"""

from typing import Dict, Tuple

import slicer
from slicer.i18n import tr as _

from ..compare import dice_table
from ..models import ModelInfo
from ..report import segment_specs
from ..roles import given_inputs, reference_modality
from ..segments import unknown_segments
from ..trainingcases import CaseFolderError, SegmentError, case_name, label_map, write_case
from . import export


def segmentMasks(segmentation, reference) -> Dict[str, object]:
    """{segment name: [k, j, i] array} of every segment, on ``reference``'s grid."""
    content = segmentation.GetSegmentation()
    masks = {}
    for index in range(content.GetNumberOfSegments()):
        segmentId = content.GetNthSegmentID(index)
        name = content.GetSegment(segmentId).GetName()
        masks[name] = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, reference).copy()
    return masks


def caseValues(model: ModelInfo, volumes: Dict, segmentation) -> Tuple[str, Dict, object, Dict]:
    """(case name, {modality: array}, label map, RAS grid) of the current case: every modality of
    the model on the reference's world grid, and the segmentation as the model's label map.
    Raises SegmentError or CaseFolderError with a message for the user."""
    given = given_inputs(model.card, volumes)
    missing = [m for m in model.modalities if m not in given]
    if missing:
        raise CaseFolderError(_("A training case needs every modality of the model; select a volume for: "
                                "{modalities}.").format(modalities=", ".join(missing)))
    if segmentation is None:
        raise SegmentError(_("Choose the output segmentation to add (corrected or not)."))
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    unknown = unknown_segments(names, model.targets)
    if unknown:  # refused before anything is read, with the names to change
        raise SegmentError(_("Segment(s) {names} match no target of the model ({targets}): rename or remove them.")
                           .format(names=", ".join(f"'{n}'" for n in unknown), targets=", ".join(model.targets)))
    referenceModality = reference_modality(model.card, list(given))
    with export.onReferenceGrid(given, referenceModality) as (onGrid, _notes):
        reference = onGrid[referenceModality]
        images = {m: slicer.util.arrayFromVolume(node).copy() for m, node in onGrid.items()}
        grid = export.volumeGeometry(reference)
        masks = segmentMasks(segmentation, reference)
    labels = label_map(masks, segment_specs(model.card))
    return case_name(given[referenceModality].GetName(), referenceModality), images, labels, grid


def addCase(model: ModelInfo, volumes: Dict, segmentation, folder: str, case: str = "",
            overwrite: bool = False) -> str:
    """Write the current case into ``folder``; returns the case folder. ``case``: a name other
    than the reference volume's. Raises trainingcases.CaseExists when it is there and not
    ``overwrite`` (the panel asks first), or another CaseFolderError / SegmentError."""
    name, images, labels, grid = caseValues(model, volumes, segmentation)
    return str(write_case(folder, case or name, images, labels, grid, model.modalities, overwrite=overwrite))


def compareRows(model: ModelInfo, current, results: Dict, reference) -> list:
    """The comparison table's rows: per target, the Dice of each result ({title: segmentation
    node}) against the ``current`` segmentation, all read on ``reference``'s grid."""
    mine = segmentMasks(current, reference)
    others = {title: segmentMasks(node, reference) for title, node in results.items()}
    return dice_table(mine, others, model.targets)
