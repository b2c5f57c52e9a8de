"""The panel's Fine-tuning section: correct, add to the training cases, fine-tune, compare.

1. "Add this case to training cases" writes the current inputs and the output segmentation
   (corrected in Segment Editor or not) into the training-cases folder (remembered in the
   settings); the folder's cases are listed under it. The same case asks before replacing itself;
   a segment that matches no target is refused with its name. The scene does not change.
2. "Fine-tune" starts from the base model on the dataset folder (the training-cases folder unless
   the user chose another), for the given minutes (``ciml train --max-minutes``: the time alone
   ends the run and its learning rate decays over it), shows the validation Dice as it comes,
   registers the new model as '<base>-finetuned-<date>' and selects it.
3. "Compare" segments the current case with the base and the fine-tuned model (one after the
   other, in the background) and shows both segmentations and their Dice against the current one.

Glue: imports qt and slicer at the top; every decision is in the plain ``trainingcases``,
``training`` and ``compare``; ``cases`` reads the scene.
"""

import datetime
import os

import qt
import slicer
from slicer.i18n import tr as _

from ..progress import elapsed_text, progress_percent, status_text
from ..training import fine_tuned_name, train_disabled_reason, validation_dice
from ..trainingcases import SETTINGS_KEY, CaseExists, CaseFolderError, SegmentError, cases_text, list_cases
from . import cases, install

TRAINING_PREFIX = "[training] "  # the Log box holds both kinds of run


class FineTuning:
    def __init__(self, ui, logic, panel):
        self.ui, self.logic, self.panel = ui, logic, panel
        self.training = None  # the training job, running or the last
        self.base = None  # the model the last fine-tuning started from
        self.comparing = []  # the comparison's segmentation jobs
        ui.trainingCasesPathLineEdit.currentPath = qt.QSettings().value(SETTINGS_KEY) or ""
        ui.trainingDataPathLineEdit.currentPath = ui.trainingCasesPathLineEdit.currentPath
        ui.trainingCasesPathLineEdit.connect("currentPathChanged(QString)", self.onCasesFolderChanged)
        ui.trainingDataPathLineEdit.connect("currentPathChanged(QString)", lambda path: panel.updateButtons())
        ui.addCaseButton.connect("clicked()", self.onAddCase)
        ui.trainButton.connect("clicked()", self.onTrainOrCancel)
        ui.compareButton.connect("clicked()", self.onCompare)
        ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: panel.updateButtons())
        ui.trainingProgressBar.setVisible(False)
        ui.compareTableWidget.setVisible(False)
        self.listCases()

    # --- the training cases -----------------------------------------------------------------
    def casesFolder(self) -> str:
        return self.ui.trainingCasesPathLineEdit.currentPath

    def onCasesFolderChanged(self, folder) -> None:
        previous = qt.QSettings().value(SETTINGS_KEY) or ""
        qt.QSettings().setValue(SETTINGS_KEY, folder)
        data = self.ui.trainingDataPathLineEdit
        if not data.currentPath or data.currentPath == previous:  # the dataset follows, unless chosen
            data.currentPath = folder
        self.listCases()

    def listCases(self) -> None:
        model = self.panel.currentModel()
        names = list_cases(self.casesFolder(), model.modalities) if model and self.casesFolder() else []
        self.ui.trainingCasesListLabel.text = cases_text(names, _("{count} case(s): {names}"), _("No case yet."))
        self.panel.updateButtons()

    def onAddCase(self) -> None:
        model, segmentation = self.panel.currentModel(), self.ui.outputSegmentationSelector.currentNode()
        if model is None or self.panel.parameters is None:
            return
        volumes = self.panel.currentInputs()
        try:
            path = self.logic.addTrainingCase(model, volumes, segmentation, self.casesFolder())
        except CaseExists as exc:
            if not slicer.util.confirmYesNoDisplay(_("{reason}. Replace it?").format(reason=exc), _("Training cases")):
                return
            path = self.logic.addTrainingCase(model, volumes, segmentation, self.casesFolder(), overwrite=True)
        except (CaseFolderError, SegmentError, ValueError, RuntimeError) as exc:
            slicer.util.errorDisplay(str(exc), _("The case was not added"))
            return
        self.panel.appendLog([_("Added the training case {path}.").format(path=path)], TRAINING_PREFIX)
        self.listCases()

    # --- fine-tuning ------------------------------------------------------------------------
    def running(self) -> bool:
        return self.training is not None and self.training.running()

    def updateButtons(self, model, inputsReady: bool) -> None:
        running = self.running()
        reason = train_disabled_reason(self.ui.trainingDataPathLineEdit.currentPath, _)
        self.ui.trainButton.text = _("Cancel fine-tuning") if running else _("Fine-tune")
        self.ui.trainButton.enabled = running or not reason
        self.ui.trainButton.toolTip = reason or _("Fine-tune the base model on the dataset in the background.")
        self.ui.addCaseButton.enabled = bool(model and inputsReady and self.casesFolder()
                                             and self.ui.outputSegmentationSelector.currentNode() is not None)
        new = self.training.model if self.training is not None and self.training.status == "done" else None
        self.ui.compareButton.enabled = bool(new and self.base and inputsReady and not self.comparing)

    def onTrainOrCancel(self) -> None:
        if self.running():
            self.training.cancel()
            return
        if not install.ensureDependencies():
            return
        basePath = self.ui.trainingBaseModelComboBox.currentData or None
        self.base = next((m for m in self.panel.models if m.path == basePath), None)
        name = fine_tuned_name(self.base.name if self.base else "model", datetime.date.today())
        self.ui.trainingProgressBar.setValue(0)
        self.ui.trainingProgressBar.setVisible(True)
        self.ui.trainingStatusLabel.text = _("Starting...")
        self.ui.trainingDiceLabel.text = ""
        folder = self.ui.trainingDataPathLineEdit.currentPath
        self.panel.appendLog([_("Fine-tuning on {folder}.").format(folder=folder)], TRAINING_PREFIX)
        # A run that cannot start has called onFinished, which shows why, before this returns.
        self.training = self.logic.train(folder, basePath, minutes=self.ui.trainingMinutesSpinBox.value, name=name,
                                         onProgress=self.onProgress, onFinished=self.onFinished, onLog=self.onLog)
        self.panel.updateButtons()

    def onLog(self, lines) -> None:
        self.panel.appendLog(lines, TRAINING_PREFIX)
        for line in lines:
            dice = validation_dice(line)
            if dice:
                self.ui.trainingDiceLabel.text = _("Validation Dice at step {step}: {dice}").format(
                    step=dice[0], dice=dice[1])

    def onProgress(self, event) -> None:
        elapsed = self.training.elapsed if self.training is not None else 0.0
        self.ui.trainingProgressBar.setValue(progress_percent(event))
        self.ui.trainingStatusLabel.text = status_text(event, _) + " - " + elapsed_text(elapsed, _)

    def onFinished(self, job) -> None:
        self.training = job
        self.ui.trainingProgressBar.setVisible(False)
        self.ui.trainingStatusLabel.text = job.outcome_text(_)
        self.panel.appendLog([job.outcome_text(_)], TRAINING_PREFIX)
        if job.model is not None:  # done (select it), or a failed or cancelled run's kept bundle
            current = self.panel.currentModel()
            self.panel.refreshModels(select=job.model.path if job.status == "done" else current.path if current else "")
        self.panel.updateButtons()

    # --- compare ----------------------------------------------------------------------------
    def onCompare(self) -> None:
        new = self.training.model if self.training is not None else None
        current = self.ui.outputSegmentationSelector.currentNode()
        if new is None or self.base is None or current is None or not install.ensureDependencies():
            return
        volumes = self.panel.currentInputs()
        titles = {_("before ({name})").format(name=self.base.name): self.base,
                  _("after ({name})").format(name=os.path.basename(new.path)): new}
        self.ui.trainingStatusLabel.text = _("Segmenting with the base and the fine-tuned model...")
        self.comparing = []

        def runNext(job=None):
            if job is not None and job.status != "done":
                self.comparing = []
                self.ui.trainingStatusLabel.text = _("The comparison failed: {error}").format(error=job.outcome_text(_))
                self.panel.updateButtons()
                return
            if len(self.comparing) == len(titles):
                self.showComparison(current, dict(zip(titles, (j.segmentation for j in self.comparing))),
                                    self.comparing[0].reference)
                return
            model = list(titles.values())[len(self.comparing)]
            job = self.logic.segment(model, volumes, None, heatMaps=False, onFinished=runNext)
            if job.running():  # one that could not start has reported through runNext already
                self.comparing.append(job)

        runNext()
        self.panel.updateButtons()

    def showComparison(self, current, results, reference) -> None:
        rows = cases.compareRows(self.panel.currentModel() or self.base, current, results, reference)
        table = self.ui.compareTableWidget
        table.setColumnCount(1 + len(results))
        table.setHorizontalHeaderLabels([_("Target")] + [_("Dice {title}").format(title=t) for t in results])
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.setItem(r, c, qt.QTableWidgetItem(text))
        table.setVisible(True)
        self.comparing = []
        self.ui.trainingStatusLabel.text = _("Compared against '{name}'.").format(name=current.GetName())
        self.panel.updateButtons()

    def cleanup(self) -> None:
        for job in [self.training] + self.comparing:
            if job is not None:
                job.detach()
                job.cancel()
