"""The panel: wires the .ui to the logic. Every decision is a plain function or job elsewhere
(roles.apply_disabled_reason, roles.auto_select, progress.status_text, job.BackgroundJob, ...);
this file only moves values between widgets, the parameter node and the logic's jobs.

Slicer-only: imports qt and slicer at the top; imported only by the module file.
"""

import logging

import qt
import slicer
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from ciml.choices import DEVICES

from . import install, results
from .models import summary
from .parameters import inputVolume, inputVolumes, setInputVolume
from .process import device_label
from .progress import elapsed_text, progress_percent, status_text
from .report import format_share, relations_rows
from .roles import apply_disabled_reason, auto_select, modality_label, role_table
from .training import train_disabled_reason

EXTRA_FOLDERS_KEY = "CIMLSegmentation/extraModelFolders"


class Panel:
    def __init__(self, ui, logic):
        self.ui, self.logic = ui, logic
        self.parameters = None
        self.models, self.inputSelectors = [], {}
        self.job, self.training = None, None
        self.elapsedTimer = qt.QTimer()
        self.elapsedTimer.setInterval(1000)
        self.elapsedTimer.connect("timeout()", self.updateElapsed)
        for device in DEVICES:  # the combo's index is the index in DEVICES
            ui.deviceComboBox.addItem(device_label(device), device)
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        ui.loadBundleButton.connect("clicked()", self.onLoadBundle)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        ui.applyButton.connect("clicked()", self.onApplyOrCancel)
        ui.heatMapComboBox.connect("currentIndexChanged(int)", self.onHeatMapChanged)
        ui.heatMapOpacitySlider.connect("valueChanged(double)", lambda value: self.onHeatMapChanged())
        ui.showChartButton.connect("clicked()", self.onShowChart)
        ui.trainButton.connect("clicked()", self.onTrainOrCancel)
        ui.trainingDataPathLineEdit.connect("currentPathChanged(QString)", lambda path: self.updateButtons())
        ui.roleTableWidget.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        ui.progressBar.setVisible(False)
        ui.trainingProgressBar.setVisible(False)
        self.refreshModels()

    # --- parameter node -------------------------------------------------------------------
    def setParameterNode(self, parameters) -> None:
        self.parameters = parameters
        if parameters is None:
            return
        index = max(0, next((i for i, m in enumerate(self.models) if m.path == parameters.modelPath), 0))
        self.ui.deviceComboBox.setCurrentIndex(DEVICES.index(parameters.device))
        self.ui.modelComboBox.setCurrentIndex(index)
        self.onModelChanged(index)

    # --- model ----------------------------------------------------------------------------
    def extraFolders(self):
        return [f for f in (qt.QSettings().value(EXTRA_FOLDERS_KEY) or []) if f]

    def refreshModels(self, select: str = "") -> None:
        self.models, problems = self.logic.findModels(self.extraFolders())
        for problem in problems:
            logging.warning("CIML Segmentation: %s", problem)
        for combo in (self.ui.modelComboBox, self.ui.trainingBaseModelComboBox):
            wasBlocked = combo.blockSignals(True)
            combo.clear()
            for model in self.models:
                combo.addItem(model.display_name, model.path)
            combo.blockSignals(wasBlocked)
        if select:
            self.ui.modelComboBox.setCurrentIndex(max(0, self.ui.modelComboBox.findData(select)))
        self.onModelChanged(self.ui.modelComboBox.currentIndex)

    def currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def onLoadBundle(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, "Choose a CIML model bundle folder")
        if not folder:
            return
        try:
            self.logic.readModel(folder)
        except Exception as exc:
            slicer.util.errorDisplay(str(exc), "Not a model bundle")
            return
        qt.QSettings().setValue(EXTRA_FOLDERS_KEY, self.extraFolders() + [folder])
        self.refreshModels(select=folder)

    def onModelChanged(self, index) -> None:
        model = self.currentModel()
        self.ui.modelSummaryLabel.text = summary(model) if model else "No model found: load a bundle folder."
        if self.parameters is not None and model is not None:
            self.parameters.modelPath = model.path
        self.rebuildInputs(model)
        self.fillRoleTable(model)
        self.updateButtons()

    # --- inputs ---------------------------------------------------------------------------
    def rebuildInputs(self, model) -> None:
        layout = self.ui.inputsPlaceholder.layout()
        while layout.rowCount():
            layout.removeRow(0)
        self.inputSelectors = {}
        if model is None or self.parameters is None:
            return
        volumes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if not n.IsA("vtkMRMLLabelMapVolumeNode") and not n.GetAttribute("CIMLSegmentation.HeatMap")]
        guess = auto_select([n.GetName() for n in volumes], model.card)
        for modality in model.modalities:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.hideChildNodeTypes = ["vtkMRMLLabelMapVolumeNode"]
            selector.addEnabled, selector.removeEnabled, selector.noneEnabled = False, False, True
            selector.noneDisplay = "(select a volume)"
            selector.setMRMLScene(slicer.mrmlScene)
            chosen = inputVolume(self.parameters, modality)
            if chosen is None and guess.get(modality):
                chosen = next(n for n in volumes if n.GetName() == guess[modality])
                setInputVolume(self.parameters, modality, chosen)
            selector.setCurrentNode(chosen)
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, m=modality: self.onInputChanged(m, node))
            # The .ui sets this form to wrap rows: the role label sits above its selector.
            layout.addRow(modality_label(model.card, modality) + ":", selector)
            self.inputSelectors[modality] = selector

    def onInputChanged(self, modality, node) -> None:
        if self.parameters is not None:
            setInputVolume(self.parameters, modality, node)
        self.updateButtons()

    def fillRoleTable(self, model) -> None:
        rows = role_table(model.card) if model else []
        table = self.ui.roleTableWidget
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate((row.target, row.subtask, row.primary, ", ".join(row.auxiliaries))):
                table.setItem(r, c, qt.QTableWidgetItem(text))

    # --- run ------------------------------------------------------------------------------
    def updateButtons(self) -> None:
        model = self.currentModel()
        running = self.job is not None and self.job.running()
        assignment = {m: (s.currentNodeID or None) for m, s in self.inputSelectors.items()}
        reason = apply_disabled_reason(model is not None, assignment, model_problem="No model: load a bundle folder.")
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.enabled = running or not reason
        self.ui.applyButton.toolTip = ("Stop the segmentation and remove its temporary files." if running
                                       else reason or "Segment the selected volumes in the background.")
        trainRunning = self.training is not None and self.training.running()
        trainReason = train_disabled_reason(self.ui.trainingDataPathLineEdit.currentPath)
        self.ui.trainButton.text = "Cancel training" if trainRunning else "Train"
        self.ui.trainButton.enabled = trainRunning or not trainReason
        self.ui.trainButton.toolTip = trainReason or "Fine-tune the base model on the dataset in the background."

    def onDeviceChanged(self, index) -> None:
        if self.parameters is not None:
            self.parameters.device = DEVICES[index]

    def onApplyOrCancel(self) -> None:
        if self.job is not None and self.job.running():
            self.job.cancel()
            return
        if not install.ensure_dependencies():
            return
        model, p = self.currentModel(), self.parameters
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = "Preparing the inputs..."
        with WaitCursor():
            job = self.logic.segment(model, inputVolumes(p, model.modalities), p.outputSegmentation,
                                     device=p.device, heatMaps=p.computeHeatMaps,
                                     onProgress=self.onProgress, onFinished=self.onFinished)
        if job.running():  # else it failed to start and onFinished has already shown why
            self.job = job
            self.elapsedTimer.start()
        self.updateButtons()

    def onProgress(self, event) -> None:
        self.ui.progressBar.setValue(progress_percent(event))
        self.ui.statusLabel.text = status_text(event)

    def updateElapsed(self) -> None:
        if self.job is not None:
            self.ui.elapsedLabel.text = elapsed_text(self.job.elapsed)

    def onFinished(self, job) -> None:
        self.job = job
        self.elapsedTimer.stop()
        self.updateElapsed()
        self.ui.progressBar.setVisible(False)
        self.updateButtons()
        if job.status == "done":
            self.parameters.outputSegmentation = job.segmentation
            notes = f" {len(job.notes)} note(s) in the log." if job.notes else ""
            self.ui.statusLabel.text = "Done." + notes
            for note in job.notes:
                logging.info("CIML Segmentation: %s", note)
            self.showRelations(job)
        else:
            self.ui.statusLabel.text = job.outcome_text()
        if job.status == "failed":
            if job.outOfMemory and slicer.util.confirmYesNoDisplay(
                    f"The GPU ran out of memory:\n{job.error}\n\nRun again on the CPU (slower)?", "Out of memory"):
                self.ui.deviceComboBox.setCurrentIndex(DEVICES.index("cpu"))
                self.onApplyOrCancel()
            elif not job.outOfMemory:
                slicer.util.errorDisplay(f"Segmentation failed: {job.error}", "CIML Segmentation", detailedText=job.log)

    # --- relations and heat maps ------------------------------------------------------------
    def showRelations(self, job) -> None:
        modalities = job.model.modalities
        rows = relations_rows(job.report, modalities)
        table = self.ui.relationsTableWidget
        table.setColumnCount(len(modalities) + 2)
        table.setHorizontalHeaderLabels(["Target"] + modalities + ["ml"])
        table.setRowCount(len(rows))
        for r, (target, shares, volume) in enumerate(rows):
            cells = [target] + [format_share(s) for s in shares] + [f"{volume:.1f}"]
            for c, text in enumerate(cells):
                table.setItem(r, c, qt.QTableWidgetItem(text))
        combo = self.ui.heatMapComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem("(none)", "")
        for key, node in job.heatMaps.items():
            combo.addItem(key, node.GetID())
        combo.blockSignals(wasBlocked)
        combo.setCurrentIndex(1 if job.heatMaps else 0)
        self.ui.showChartButton.enabled = job.relationsChart is not None
        self.onHeatMapChanged()

    def onHeatMapChanged(self, index=None) -> None:
        if self.job is None or self.job.status != "done":
            return
        nodeId = self.ui.heatMapComboBox.currentData
        node = slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None
        results.showHeatMap(node, self.job.reference, self.ui.heatMapOpacitySlider.value)

    def onShowChart(self) -> None:
        if self.job is not None and self.job.relationsChart is not None:
            self.logic.showChart(self.job.relationsChart)

    # --- fine-tuning ----------------------------------------------------------------------
    def onTrainOrCancel(self) -> None:
        if self.training is not None and self.training.running():
            self.training.cancel()
            return
        if not install.ensure_dependencies():
            return
        base = self.ui.trainingBaseModelComboBox.currentData or None
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.setVisible(True)
        self.ui.trainingStatusLabel.text = "Starting..."
        job = self.logic.train(self.ui.trainingDataPathLineEdit.currentPath, base, self.ui.trainingStepsSpinBox.value,
                               onProgress=self.onTrainingProgress, onFinished=self.onTrainingFinished)
        if job.running():  # else it failed to start and onTrainingFinished has already shown why
            self.training = job
        self.updateButtons()

    def onTrainingProgress(self, event) -> None:
        elapsed = self.training.elapsed if self.training is not None else 0.0
        self.ui.trainingProgressBar.setValue(progress_percent(event))
        self.ui.trainingStatusLabel.text = status_text(event) + " - " + elapsed_text(elapsed)

    def onTrainingFinished(self, job) -> None:
        self.training = job
        self.ui.trainingProgressBar.setVisible(False)
        self.ui.trainingStatusLabel.text = job.outcome_text()
        if job.status == "done":
            self.refreshModels(select=job.model.path)
        self.updateButtons()

    def cleanup(self) -> None:
        self.elapsedTimer.stop()
        for job in (self.job, self.training):
            if job is not None:
                job.onProgress = job.onFinished = None  # the panel is going away: no more updates
                job.cancel()
