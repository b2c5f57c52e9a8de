"""One segmentation run inside Slicer: export the inputs, run the worker, import the results.

``SegmentationJob`` is a ``job.BackgroundJob``: polled from the timer the logic passes (a
``qt.QTimer``, so the GUI stays responsive), or by ``wait()`` for scripts and the self-test.
The job, not the panel, brings the results into the scene, so a run finishes whatever module is
shown. Slicer-only: imports slicer at the top.
"""

import os
from typing import Dict, List, Optional

import slicer
from slicer.i18n import tr as _

from . import export, results
from .job import BackgroundJob, TimerFactory
from .models import ModelInfo
from .process import is_out_of_memory, segment_command
from .report import read_report, relations_rows, report_warnings


class SegmentationJob(BackgroundJob):
    TEMP_PREFIX = "ciml-segment-"
    POLL_MS = 200

    def __init__(self, model: ModelInfo, volumes: Dict, segmentation, moduleDir: str,
                 device: str = "auto", heatMaps: bool = True, timer: Optional[TimerFactory] = None,
                 **callbacks):
        super().__init__(moduleDir, timer=timer, **callbacks)
        self.model, self.volumes, self.segmentation = model, volumes, segmentation
        self.device, self.heatMapsWanted = device, heatMaps
        self.reference = volumes[model.reference]
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
        paths, self.notes = export.exportInputs(self.volumes, self.model.reference, folder)
        return segment_command(self.python, self.model.path, paths, os.path.join(folder, "out"),
                               self.device, self.heatMapsWanted)

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
                "vtkMRMLSegmentationNode", f"{self.reference.GetName()} {self.model.name} segmentation")
        results.loadSegmentation(os.path.join(outDir, files[0]), card, self.segmentation, self.reference)
        self.report = read_report(outDir)
        self.notes += report_warnings(self.report)
        base = self.segmentation.GetName()
        if self.heatMapsWanted:
            self.heatMaps = results.loadHeatMaps(outDir, card, self.reference, base)
        rows = relations_rows(self.report, self.model.modalities)
        if rows:
            self.relationsTable = results.relationsTableNode(rows, self.model.modalities, f"{base} relations")
            self.relationsChart = results.relationsChart(self.relationsTable, self.model.modalities, f"{base} relations chart")
            results.placeNextTo(self.relationsTable, self.reference)
