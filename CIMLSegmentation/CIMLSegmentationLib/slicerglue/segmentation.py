"""One segmentation run inside Slicer: export the inputs, run the worker, import the results.

``SegmentationJob`` is a ``job.BackgroundJob``: polled from the timer the logic passes (a
``qt.QTimer``, so the GUI stays responsive), or by ``wait()`` for scripts and the self-test.
The job, not the panel, brings the results into the scene, so a run finishes whatever module is
shown. Only the selected volumes are exported and passed to the worker; without the card's
reference, the first selected modality in card order is the reference (as the worker chooses
it: ``roles.reference_modality``) for the export's grid and the results' placement and geometry.
A new segmentation made for a run with modalities left out is named "... without <modality>".
Slicer-only: imports slicer at the top.
"""

import os
from typing import Dict, List, Optional

import slicer
from slicer.i18n import tr as _

from ..job import BackgroundJob, TimerFactory
from ..models import ModelInfo
from ..naming import segmentation_name
from ..process import is_out_of_memory, maps_option, segment_command
from ..report import effect_details, read_report, relations_rows, report_warnings
from ..roles import given_inputs, reference_modality
from . import export, results


class SegmentationJob(BackgroundJob):
    TEMP_PREFIX = "ciml-segment-"
    POLL_MS = 200

    def __init__(self, model: ModelInfo, volumes: Dict, segmentation, moduleDir: str,
                 device: str = "auto", heatMaps: bool = True, timer: Optional[TimerFactory] = None,
                 gradCam: bool = False, **callbacks):
        super().__init__(moduleDir, timer=timer, **callbacks)
        self.model, self.segmentation = model, segmentation
        self.volumes = given_inputs(model.card, volumes)  # {modality: volume}, the selected ones
        self.absent = [m for m in model.modalities if m not in self.volumes]
        self.device, self.heatMapsWanted, self.gradCamWanted = device, heatMaps, gradCam
        self.referenceModality = reference_modality(model.card, list(self.volumes))
        self.reference = self.volumes.get(self.referenceModality)
        self.notes: List[str] = []
        self.heatMaps: Dict[str, object] = {}
        self.report: Dict = {}
        self.relationsTable = None
        self.relationsChart = None

    @property
    def outOfMemory(self) -> bool:
        """Failed because the GPU ran out of memory: a rerun on the CPU may succeed."""
        return self.status == "failed" and self.device != "cpu" and is_out_of_memory(self.error)

    def _prepare(self, folder: str) -> List[str]:
        if self.reference is None:
            raise ValueError(_("No input volume is selected."))
        paths, self.notes = export.exportInputs(self.volumes, self.referenceModality, folder)
        return segment_command(self.python, self.model.path, paths, os.path.join(folder, "out"), self.device,
                               maps=maps_option(self.heatMapsWanted, self.gradCamWanted))

    def _finish(self, folder: str) -> None:
        self._importResults(os.path.join(folder, "out"))

    def _finish_error(self, exc: Exception) -> str:
        return _("the results could not be loaded: {error}").format(error=exc)

    def _importResults(self, outDir: str) -> None:
        card = self.model.card
        files = [f for f in os.listdir(outDir) if f.startswith("segmentation.")]
        if not files:
            raise RuntimeError(_("the worker wrote no segmentation"))
        if self.segmentation is None or self.segmentation.GetScene() is None:  # none, or deleted meanwhile
            self.segmentation = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", segmentation_name(self.reference.GetName(), self.model.name, self.absent))
        results.loadSegmentation(os.path.join(outDir, files[0]), card, self.segmentation, self.reference)
        self.report = read_report(outDir)
        self.notes += report_warnings(self.report)
        base = self.segmentation.GetName()
        if self.heatMapsWanted or self.gradCamWanted:
            self.heatMaps = results.loadHeatMaps(outDir, card, self.reference, base)
        rows = relations_rows(self.report, self.model.modalities, self.absent)
        if rows:
            details = effect_details(self.report, self.model.modalities, self.absent)
            self.relationsTable = results.relationsTableNode(rows, self.model.modalities, f"{base} relations", details)
            self.relationsChart = results.relationsChart(self.relationsTable, self.model.modalities, f"{base} relations chart")
            results.placeNextTo(self.relationsTable, self.reference)
