"""The panel: wires the .ui to the logic. Every decision is a plain function or job in the plain
half (roles.apply_disabled_reason, roles.auto_select, progress.status_text, job.RunRecord.end,
report.relations_table, ...); this file only moves values between widgets, the parameter node
and the logic's jobs.

A run outlives the panel's parameter node (the widget drops it when the user leaves the module
or the scene closes): the job brings the results into the scene, its callbacks update only
widgets and the ``job.RunRecord``, and the output segmentation reaches the parameter node once
the panel has one again. The elapsed time ticks from the job's own timer, so it cannot outlast
the job. The worker's messages go to the Log box as they arrive (bounded by the .ui).

Glue: imports qt and slicer at the top; imported only by the module file.
"""

import logging

import qt
import slicer
from slicer.i18n import tr as _
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from ciml.choices import DEVICES

from ..job import RunRecord
from ..models import add_folder, folder_list, model_index, summary
from ..process import device_index, device_label, segmenting_line
from ..progress import elapsed_text, progress_percent, status_text
from ..report import fill_table, first_map, map_title, relations_table
from ..roles import apply_disabled_reason, auto_select, inputs_to_guess, modality_label, role_table, withhold_choices
from . import install, results
from .finetune import FineTuning
from .parameters import declinedInputs, inputVolume, inputVolumes, setInputDeclined, setInputVolume

EXTRA_FOLDERS_KEY = "CIMLSegmentation/extraModelFolders"


class Panel:
    def __init__(self, ui, logic):
        self.ui, self.logic = ui, logic
        self.parameters = None
        self.models, self.inputSelectors = [], {}
        self.runs, self.fineTuning = RunRecord(), None  # segmentation runs; the Fine-tuning section
        for device in DEVICES:  # the combo's index is the index in DEVICES
            ui.deviceComboBox.addItem(device_label(device), device)
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        ui.loadBundleButton.connect("clicked()", self.onLoadBundle)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        ui.applyButton.connect("clicked()", self.onApplyOrCancel)
        ui.heatMapComboBox.connect("currentIndexChanged(int)", self.onHeatMapChanged)
        ui.heatMapOpacitySlider.connect("valueChanged(double)", lambda value: self.onHeatMapChanged())
        ui.showChartButton.connect("clicked()", self.onShowChart)
        self.withoutMenu = qt.QMenu(ui.segmentWithoutButton)  # filled with the last run's modalities
        ui.segmentWithoutButton.setMenu(self.withoutMenu)
        ui.roleTableWidget.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        ui.progressBar.setVisible(False)
        self.refreshModels()
        self.fineTuning = FineTuning(ui, logic, self)

    # --- parameter node -------------------------------------------------------------------
    def setParameterNode(self, parameters) -> None:
        self.parameters = parameters
        if parameters is None:
            return
        index = max(0, model_index([m.path for m in self.models], parameters.modelPath))
        self.ui.deviceComboBox.setCurrentIndex(device_index(DEVICES, parameters.device))
        self.ui.modelComboBox.setCurrentIndex(index)
        self.onModelChanged(index)
        self.takeRunResult()

    def takeRunResult(self) -> None:
        """A run that finished while the module was not shown: its output now fills the selector."""
        segmentation = self.runs.take_output(self.parameters is not None, lambda node: node.GetScene() is not None)
        if segmentation is not None:
            self.parameters.outputSegmentation = segmentation

    # --- model ----------------------------------------------------------------------------
    def extraFolders(self):
        # Settings are an INI file: a list of one folder comes back as a string (see folder_list).
        return folder_list(qt.QSettings().value(EXTRA_FOLDERS_KEY))

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
        if select:  # by path_key: the dialog's 'C:/a/b' is the model's 'C:\\a\\b' on Windows
            self.ui.modelComboBox.setCurrentIndex(max(0, model_index([m.path for m in self.models], select)))
        self.onModelChanged(self.ui.modelComboBox.currentIndex)

    def currentInputs(self) -> dict:
        """{modality: volume node or None} of the current model, from the parameter node."""
        model = self.currentModel()
        return inputVolumes(self.parameters, model.modalities) if model and self.parameters is not None else {}

    def currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def onLoadBundle(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, _("Choose a CIML model bundle folder"))
        if not folder:
            return
        try:
            self.logic.readModel(folder)
        except Exception as exc:
            slicer.util.errorDisplay(str(exc), _("Not a model bundle"))
            return
        qt.QSettings().setValue(EXTRA_FOLDERS_KEY, add_folder(self.extraFolders(), folder))
        self.refreshModels(select=folder)

    def onModelChanged(self, index) -> None:
        model = self.currentModel()
        self.ui.modelSummaryLabel.text = summary(model) if model else _("No model found: load a bundle folder.")
        if self.parameters is not None and model is not None:
            self.parameters.modelPath = model.path
        self.rebuildInputs(model)
        self.fillRoleTable(model)
        if self.fineTuning is not None:
            self.fineTuning.listCases()  # the cases complete for this model's modalities
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
                   if not n.IsA("vtkMRMLLabelMapVolumeNode") and not results.isOutputVolume(n)]
        guess = auto_select([n.GetName() for n in volumes], model.card)
        toGuess = inputs_to_guess(inputVolumes(self.parameters, model.modalities), declinedInputs(self.parameters))
        for modality in model.modalities:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.hideChildNodeTypes = ["vtkMRMLLabelMapVolumeNode"]
            selector.addEnabled, selector.removeEnabled, selector.noneEnabled = False, False, True
            selector.noneDisplay = _("(none: segment without it)")
            selector.setMRMLScene(slicer.mrmlScene)
            results.hideOutputVolumes(selector)  # heat and effect maps are never inputs
            chosen = inputVolume(self.parameters, modality)
            if modality in toGuess and guess.get(modality):
                chosen = next(n for n in volumes if n.GetName() == guess[modality])
                setInputVolume(self.parameters, modality, chosen)
            selector.setCurrentNode(chosen)
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, m=modality: self.onInputChanged(m, node))
            # The .ui sets this form to wrap rows: the role label sits above its selector.
            layout.addRow(modality_label(model.card, modality, _) + ":", selector)
            self.inputSelectors[modality] = selector

    def onInputChanged(self, modality, node) -> None:
        if self.parameters is not None:
            setInputVolume(self.parameters, modality, node)
            setInputDeclined(self.parameters, modality, node is None)  # "none" stays none
        self.updateButtons()

    def fillRoleTable(self, model) -> None:
        rows = role_table(model.card) if model else []
        table = self.ui.roleTableWidget
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row.cells):
                table.setItem(r, c, qt.QTableWidgetItem(text))

    # --- run ------------------------------------------------------------------------------
    def updateButtons(self) -> None:
        model = self.currentModel()
        running = self.runs.running()
        assignment = {m: (s.currentNodeID or None) for m, s in self.inputSelectors.items()}
        reason = apply_disabled_reason(model is not None, assignment, card=model.card if model else None,
                                       model_problem=_("No model: load a bundle folder."), _=_)
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or not reason
        self.ui.applyButton.toolTip = (_("Stop the segmentation and remove its temporary files.") if running
                                       else reason or _("Segment the selected volumes in the background."))
        if self.fineTuning is not None:
            self.fineTuning.updateButtons(model, model is not None and not reason and not running)
        job = self.runs.job
        self.ui.segmentWithoutButton.enabled = (not running and job is not None and job.status == "done"
                                                and bool(self.withoutMenu.actions()))

    def onDeviceChanged(self, index) -> None:
        if self.parameters is not None:
            self.parameters.device = DEVICES[index]

    def onApplyOrCancel(self) -> None:
        if self.runs.running():
            self.runs.job.cancel()
            return
        if not install.ensureDependencies():
            return
        model, p = self.currentModel(), self.parameters
        self.startRun(model, inputVolumes(p, model.modalities), p.outputSegmentation, p.device, p.computeHeatMaps,
                      p.computeGradCam)

    def startRun(self, model, volumes, segmentation, device, heatMaps, gradCam=False) -> None:
        """Start a segmentation; a run that cannot start has already shown why when this returns."""
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = _("Preparing the inputs...")
        self.ui.elapsedLabel.text = ""
        self.appendLog([segmenting_line(model.name, device, _("Segmenting with {model} on {device}."))])
        with WaitCursor():
            self.runs.job = self.logic.segment(model, volumes, segmentation, device=device, heatMaps=heatMaps,
                                               gradCam=gradCam, onProgress=self.onProgress, onFinished=self.onFinished,
                                               onLog=self.appendLog, onTick=self.onTick)
        self.updateButtons()

    def onProgress(self, event) -> None:
        self.ui.progressBar.setValue(progress_percent(event))
        self.ui.statusLabel.text = status_text(event, _)

    def onTick(self, job) -> None:
        self.ui.elapsedLabel.text = elapsed_text(job.elapsed, _)

    def appendLog(self, lines, prefix: str = "") -> None:
        """The worker's messages, as they arrive; the .ui's maximumBlockCount bounds the box."""
        if lines:
            self.ui.logTextEdit.appendPlainText("\n".join(prefix + line for line in lines))

    def onFinished(self, job) -> None:
        # Runs whatever module is shown, even after the scene closed: widgets and the record only.
        end = self.runs.end(job, job.notes, job.outOfMemory, _)
        self.onTick(job)
        self.ui.progressBar.setVisible(False)
        self.updateButtons()
        self.ui.statusLabel.text = end.status_line
        self.appendLog(end.notes, _("Note: "))
        for note in end.notes:
            logging.info("CIML Segmentation: %s", note)
        if end.show_results:
            self.showRelations(job)
            self.takeRunResult()
        self.appendLog([end.status_line])
        if end.offer_cpu_rerun and slicer.util.confirmYesNoDisplay(
                _("The GPU ran out of memory:\n{error}\n\nRun again on the CPU (slower)?").format(error=job.error),
                _("Out of memory")):
            self.ui.deviceComboBox.setCurrentIndex(DEVICES.index("cpu"))
            # The same inputs as the failed run: the parameter node may be gone meanwhile.
            self.startRun(job.model, job.volumes, job.segmentation, "cpu", job.heatMapsWanted, job.gradCamWanted)
        elif end.error:
            slicer.util.errorDisplay(_("Segmentation failed: {error}").format(error=end.error),
                                     _("CIML Segmentation"), detailedText=job.log)

    # --- relations and heat maps ------------------------------------------------------------
    def showRelations(self, job) -> None:
        modalities = job.model.modalities
        relations = relations_table(job.report, modalities, job.absent, _("Target"), _("ml"))
        table = self.ui.relationsTableWidget
        fill_table(table, relations, qt.QTableWidgetItem, qt.Qt.AlignCenter)
        table.resizeRowsToContents()  # a cell holds the share and, below it, the change without the modality
        combo = self.ui.heatMapComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("(none)"), "")
        for key, node in job.heatMaps.items():
            combo.addItem(map_title(key), node.GetID())
        combo.blockSignals(wasBlocked)
        keys = list(job.heatMaps)
        shown = first_map(keys, relations.rows, modalities)  # the most influential modality's map for the first target
        combo.setCurrentIndex(keys.index(shown) + 1 if shown else 0)
        self.ui.showChartButton.enabled = job.relationsChart is not None
        self.fillWithoutMenu(job)
        self.onHeatMapChanged()

    def fillWithoutMenu(self, job) -> None:
        """'Segment again without...': one entry per modality the run had; greyed out, with why,
        where leaving it out would leave a sub-task without input."""
        self.withoutMenu.clear()
        for modality, reason in withhold_choices(job.model.card, list(job.volumes), _):
            action = self.withoutMenu.addAction(f"{modality} ({reason})" if reason else modality)
            action.enabled = not reason
            action.connect("triggered()", lambda m=modality: self.onSegmentWithout(m))
        self.updateButtons()

    def onSegmentWithout(self, modality) -> None:
        """The last run again with ``modality`` set to "none", into a new segmentation ("... without
        <modality>") beside the last one; the selectors show what runs."""
        job = self.runs.job
        if job is None or job.status != "done" or self.runs.running():
            return
        volumes = {m: v for m, v in job.volumes.items() if m != modality and v.GetScene() is not None}
        current = self.currentModel()
        if self.parameters is not None and current is not None and current.path == job.model.path:
            for m, selector in self.inputSelectors.items():
                selector.setCurrentNode(volumes.get(m))  # updates the parameter node (onInputChanged)
        if not install.ensureDependencies():
            return
        if self.parameters is not None:
            self.parameters.outputSegmentation = None  # a new segmentation: the last one stays beside it
        self.startRun(job.model, volumes, None, job.device, job.heatMapsWanted, job.gradCamWanted)

    def clearRelations(self) -> None:
        """The scene closed: the last run's nodes are gone."""
        self.ui.relationsTableWidget.setRowCount(0)
        combo = self.ui.heatMapComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.blockSignals(wasBlocked)
        self.ui.showChartButton.enabled = False
        self.withoutMenu.clear()
        self.updateButtons()

    def onHeatMapChanged(self, index=None) -> None:
        job = self.runs.job
        if job is None or job.status != "done":
            return
        nodeId = self.ui.heatMapComboBox.currentData
        node = slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None
        results.showHeatMap(node, job.reference, self.ui.heatMapOpacitySlider.value)

    def onShowChart(self) -> None:
        job = self.runs.job
        if job is not None and job.status == "done" and job.relationsChart is not None:
            self.logic.showChart(job.relationsChart)

    # --- the widget's lifecycle -------------------------------------------------------------
    def sceneClosing(self) -> None:
        """Cancel a segmentation (its inputs and outputs go with the scene; the widget has
        already dropped the parameter node, so the cancel's callback cannot reach it) and forget
        its results. Fine-tuning goes on: it writes to the models folder, not to the scene."""
        self.runs.forget()
        self.clearRelations()

    def cleanup(self) -> None:
        if self.runs.job is not None:
            self.runs.job.detach()  # the panel is going away: no more updates
            self.runs.job.cancel()
        self.fineTuning.cleanup()
