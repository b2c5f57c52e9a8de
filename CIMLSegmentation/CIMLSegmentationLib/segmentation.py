"""One segmentation run inside Slicer: export the inputs, run the worker, import the results.

``SegmentationJob`` polls the worker from a ``qt.QTimer`` so the GUI stays responsive; scripts
and the self-test call ``wait()`` instead, which blocks until the worker exits and then imports
the results in the same way.
"""

import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional

import qt
import slicer

from . import export, results
from .models import ModelInfo
from .process import WorkerProcess, is_out_of_memory, python_executable, segment_command, worker_environment

POLL_MS = 200


class SegmentationJob:
    def __init__(self, model: ModelInfo, volumes: Dict, segmentation, moduleDir: str,
                 device: str = "auto", heatMaps: bool = True,
                 onProgress: Optional[Callable[[Dict], None]] = None,
                 onFinished: Optional[Callable[["SegmentationJob"], None]] = None):
        self.model, self.volumes, self.segmentation = model, volumes, segmentation
        self.moduleDir, self.device, self.heatMapsWanted = moduleDir, device, heatMaps
        self.onProgress, self.onFinished = onProgress, onFinished
        self.reference = volumes[model.reference]
        self.status = "new"  # new, running, done, failed, cancelled
        self.error = ""
        self.outOfMemory = False
        self.notes: List[str] = []
        self.heatMaps: Dict[str, object] = {}
        self.report: Dict = {}
        self.relationsTable = None
        self.relationsChart = None
        self.worker: Optional[WorkerProcess] = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self._poll)

    def start(self) -> "SegmentationJob":
        folder = tempfile.mkdtemp(prefix="ciml-segment-")
        try:
            paths, self.notes = export.exportInputs(self.volumes, self.model.reference, folder)
        except Exception as exc:
            self._fail(str(exc), folder)
            return self
        args = segment_command(python_executable(), self.model.path, paths,
                               os.path.join(folder, "out"), self.device, self.heatMapsWanted)
        logging.info("CIML Segmentation: %s", " ".join(args))
        self.worker = WorkerProcess(args, env=worker_environment(self.moduleDir), temp_dir=folder).start()
        self.status = "running"
        self.timer.start()
        return self

    def running(self) -> bool:
        return self.status == "running"

    def wait(self) -> "SegmentationJob":
        """Block until the worker exits, then import the results (scripts and tests)."""
        if self.worker is not None and self.running():
            self.worker.wait()
            self._poll()
        return self

    def cancel(self) -> None:
        if self.worker is not None and self.running():
            self.timer.stop()
            self.worker.cancel()
            self.status, self.error = "cancelled", "Cancelled."
            self._finished()

    def _poll(self) -> None:
        for event in self.worker.poll():
            if self.onProgress:
                self.onProgress(event)
        if self.worker.running() or not self.running():
            return
        self.timer.stop()
        try:
            if self.worker.succeeded():
                self._importResults(os.path.join(self.worker.temp_dir, "out"))
                self.status = "done"
            else:
                self._fail(self.worker.error())
        except Exception as exc:  # a result that cannot be read: one message, not a traceback
            logging.exception("CIML Segmentation: importing the results failed")
            self._fail(f"the results could not be loaded: {exc}")
        finally:
            if self.worker.stderr_text:
                logging.info("CIML Segmentation worker log:\n%s", self.worker.stderr_text)
            self.worker.cleanup()
        self._finished()

    def _fail(self, message: str, folder: str = "") -> None:
        self.status, self.error = "failed", message
        self.outOfMemory = self.device != "cpu" and is_out_of_memory(message)
        if folder:  # failed before the worker started: nothing else will clean up or report
            shutil.rmtree(folder, ignore_errors=True)
            self._finished()

    def _finished(self) -> None:
        if self.onFinished:
            self.onFinished(self)

    def _importResults(self, outDir: str) -> None:
        card = self.model.card
        files = [f for f in os.listdir(outDir) if f.startswith("segmentation.")]
        if not files:
            raise RuntimeError("the worker wrote no segmentation")
        if self.segmentation is None:
            self.segmentation = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{self.reference.GetName()} {self.model.name} segmentation")
        results.loadSegmentation(os.path.join(outDir, files[0]), card, self.segmentation, self.reference)
        self.report = results.read_report(outDir)
        self.notes += results.report_warnings(self.report)
        base = self.segmentation.GetName()
        if self.heatMapsWanted:
            self.heatMaps = results.loadHeatMaps(outDir, card, self.reference, base)
        rows = results.relations_rows(self.report, self.model.modalities)
        if rows:
            self.relationsTable = results.relationsTableNode(rows, self.model.modalities, f"{base} relations")
            self.relationsChart = results.relationsChart(self.relationsTable, self.model.modalities, f"{base} relations chart")
            results.placeNextTo(self.relationsTable, self.reference)
