"""CIML Segmentation: multimodal tumour segmentation with per-modality effect and heat maps.

Thin module file: metadata, a widget that loads the .ui and hands it to the panel, a headless
logic, and the self-test. The network runs in a separate worker process (``python -m ciml``),
so torch never loads into Slicer; everything else lives in CIMLSegmentationLib (decisions on
plain values) and CIMLSegmentationLib.slicerglue (the Slicer side). Imports slicer and both
at the top (this file only runs in Slicer).
"""

import datetime
import os
import shutil
import tempfile
import unittest

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from CIMLSegmentationLib import models as modelsLib
from CIMLSegmentationLib import samplecase, trainingcases
from CIMLSegmentationLib.training import fine_tuned_name
from CIMLSegmentationLib.requirements import SELFTEST_INSTALL_VARIABLE, selftest_install
from CIMLSegmentationLib.training import TrainingJob
from CIMLSegmentationLib.slicerglue import cases, install, sampledata
from CIMLSegmentationLib.slicerglue.parameters import CIMLSegmentationParameterNode
from CIMLSegmentationLib.slicerglue.segmentation import SegmentationJob
from CIMLSegmentationLib.slicerglue.timer import pollTimer
from CIMLSegmentationLib.slicerglue.widget import Panel

MODULE_DIR = os.path.dirname(__file__)


def jobCallbacks(onProgress=None, onFinished=None, onLog=None, onTick=None):
    """The logic's callbacks, named as Slicer names them, under the names the plain jobs take
    (``CIMLSegmentationLib.job.BackgroundJob``); another name is a TypeError."""
    return {"on_progress": onProgress, "on_finished": onFinished, "on_log": onLog, "on_tick": onTick}


class CIMLSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CIML Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["CIMLSegmentation developers"]
        self.parent.helpText = _(
            "Segments tumours from several modalities at once (the MRI sequences of a brain scan, or "
            "PET with CT) and shows, per modality, what withholding it changes (effect maps and a "
            "relations table). Choose a model, check the volume chosen for each modality (or none), "
            "and press Apply: the network runs in the "
            "background and can be cancelled. A sample case is in the Sample Data module.<br><br>"
            "The network is CIML (complementary information mutual learning: Shen et al., Neural "
            "Networks 2024, arXiv 2401.02717); the network here is this project's interpretation of "
            "the published abstract. Also offered: MAML (Zhang et al., MICCAI 2021), PASSION "
            "(Shi et al., ACM MM 2024) for missing modalities, DTC (Luo et al., AAAI 2021) for "
            "semi-supervised training. "
            '<a href="https://github.com/ciml-segmentation/SlicerCIMLSegmentation/blob/main/docs/slicer-module.md">User guide</a>.')
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch, MONAI and SimpleITK. The CIML, MAML, PASSION and DTC methods "
            "are the work of their authors, cited above; any error in their interpretation is ours.")
        # Sample Data is importable only once every module is loaded (as in Slicer's module template).
        slicer.app.connect("startupCompleted()", sampledata.registerSampleData)


class CIMLSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui and hands it to the panel; connects the parameter node while the module is
    shown. Runs go on when the user leaves the module; closing the scene cancels a segmentation."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self.panel = self._guiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CIMLSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CIMLSegmentationLogic()
        self.panel = Panel(self.ui, self.logic)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def enter(self):
        self.setParameterNode(self.logic.getParameterNode())

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        # The parameter node goes first, so the cancelled run's callback cannot reach it.
        self.setParameterNode(None)
        self.panel.sceneClosing()

    def onSceneEndClose(self, caller, event):
        # Closing a scene while another module is shown must not connect this one's GUI
        # (as Slicer's module template does).
        if self.parent.isEntered:
            self.enter()

    def setParameterNode(self, parameters):
        if self.panel.parameters is not None and self._guiTag is not None:
            self.panel.parameters.disconnectGui(self._guiTag)
            self._guiTag = None
        if parameters is not None:
            self._guiTag = parameters.connectGui(self.ui)
        self.panel.setParameterNode(parameters)

    def cleanup(self):
        self.removeObservers()
        if self.panel:
            self.panel.cleanup()


class CIMLSegmentationLogic(ScriptedLoadableModuleLogic):
    """Headless: find models, segment, fine-tune. ``segment(..., wait=True)`` blocks until done."""

    builtinModels = [os.path.join(MODULE_DIR, "Resources", "Models", "brats-sample")]

    def getParameterNode(self):
        return CIMLSegmentationParameterNode(super().getParameterNode())

    def modelsFolder(self):
        return str(modelsLib.user_models_dir(slicer.app.slicerUserSettingsFilePath))

    def findModels(self, extraFolders=()):
        return modelsLib.find_models(self.builtinModels, self.modelsFolder(), extraFolders)

    def readModel(self, folder):
        return modelsLib.read_model(folder)

    def segment(self, model, volumes, segmentation=None, device="auto", heatMaps=True, gradCam=False, wait=False,
                **callbacks):
        """Run the model on {modality: volume node or None}; a modality without a volume is left out
        (every sub-task needs one). ``heatMaps``: effect maps and the relations; ``gradCam``: Grad-CAM
        maps too. Returns the SegmentationJob, which brings the results into the scene itself.
        ``callbacks``: onProgress, onFinished, onLog, onTick (see ``jobCallbacks``)."""
        job = SegmentationJob(model, volumes, segmentation, MODULE_DIR, device, heatMaps, timer=pollTimer,
                              gradCam=gradCam, **jobCallbacks(**callbacks)).start()
        return job.wait() if wait else job

    def train(self, dataFolder, baseModel=None, steps=None, name=None, wait=False, minutes=None, **callbacks):
        """Fine-tune on a dataset folder; returns the TrainingJob. ``minutes``: the time limit
        (then the worker validates and keeps the best bundle); ``steps``: the step limit (None:
        the card's ``training.max_steps``). On success its bundle is copied into the models folder
        (``job.model``) as ``name`` (``training.fine_tuned_name``); a run that fails after saving
        a bundle keeps it."""
        job = TrainingJob(MODULE_DIR, dataFolder, self.modelsFolder(), baseModel, steps, timer=pollTimer, name=name,
                          max_minutes=minutes, **jobCallbacks(**callbacks)).start()
        return job.wait() if wait else job

    def addTrainingCase(self, model, volumes, segmentation, folder, case="", overwrite=False):
        """Write {modality: volume} and ``segmentation`` as one training case into ``folder`` (the
        layout ``ciml train`` reads, the model's names and label values); the scene is unchanged.
        Returns the case folder; raises trainingcases.CaseExists unless ``overwrite``."""
        return cases.addCase(model, volumes, segmentation, folder, case, overwrite)

    def showChart(self, chart):
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        layoutManager.plotWidget(0).mrmlPlotViewNode().SetPlotChartNodeID(chart.GetID())


class CIMLSegmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer, from CTest (``py_CIMLSegmentation``) or the module's Reload and Test:
    the sample case from Sample Data, then the built-in model on it. A test that needs the
    worker's packages installs them when missing from Reload and Test (after asking); under CTest
    (--testing) it skips with the reason unless CIML_SELFTEST_INSTALL=1 asks for the install, and
    CIML_SELFTEST_INSTALL=0 always skips (``requirements.selftest_install``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Reload and Test calls this directly, outside unittest's runner: report a skip, not an error.
        for test in (self.test_sample_case_loads, self.test_segment_sample_case, self.test_add_cases_and_fine_tune):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"Skipped {test.__name__}: {skipped}")

    def test_sample_case_loads(self):
        self.delayDisplay("Loading the sample case (made by the worker on first use)")
        volumes = sampledata.loadSampleCase()
        self.assertEqual(list(volumes), list(samplecase.MODALITIES))
        for modality, volume in volumes.items():
            self.assertEqual(volume.GetName(), samplecase.node_name(modality))
            self.assertGreater(volume.GetImageData().GetDimensions()[2], 1)  # a 3D volume
        self.delayDisplay("Sample case loaded")

    def test_segment_sample_case(self):
        self.requireDependencies()
        logic = CIMLSegmentationLogic()
        model = modelsLib.read_model(logic.builtinModels[0], origin="built-in")
        volumes = sampledata.loadSampleCase()
        self.assertEqual(sorted(volumes), sorted(model.modalities))
        self.delayDisplay("Running the built-in model")
        job = logic.segment(model, volumes, wait=True)
        self.assertEqual(job.status, "done", job.error)
        segmentation = job.segmentation.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, model.targets)
        self.assertEqual(len(job.heatMaps), len(model.modalities))  # one effect map per modality
        self.delayDisplay("Running it again without t2, as 'Segment again without...' does")
        again = logic.segment(model, dict(volumes, t2=None), wait=True)
        self.assertEqual(again.status, "done", again.error)
        self.assertEqual(again.report.get("absent"), ["t2"])
        self.assertTrue(again.segmentation.GetName().endswith(" without t2"))
        self.assertIsNotNone(job.segmentation.GetScene())  # the first segmentation stays beside it
        self.delayDisplay("Test passed")

    def test_add_cases_and_fine_tune(self):
        """The loop on the built-in model (the tiny one: 5 MB, 64-voxel windows): segment, correct,
        add two cases, fine-tune two steps, and the new model is registered and segments."""
        self.requireDependencies()
        logic = CIMLSegmentationLogic()
        model = modelsLib.read_model(logic.builtinModels[0], origin="built-in")
        volumes = sampledata.loadSampleCase()
        job = logic.segment(model, volumes, heatMaps=False, wait=True)
        self.assertEqual(job.status, "done", job.error)
        segmentation = job.segmentation
        # a correction, as Segment Editor would make it: ET cleared
        content = segmentation.GetSegmentation()
        etId = content.GetSegmentIdBySegmentName("ET")
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            0 * slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, etId, job.reference), segmentation, etId,
            job.reference)
        names = [v.GetName() for v in volumes.values()]
        modified = [v.GetModifiedSinceRead() for v in volumes.values()]
        folder = tempfile.mkdtemp(prefix="ciml-selftest-cases-")
        try:
            self.delayDisplay("Adding two training cases")
            first = logic.addTrainingCase(model, volumes, segmentation, folder)
            with self.assertRaises(trainingcases.CaseExists):
                logic.addTrainingCase(model, volumes, segmentation, folder)
            logic.addTrainingCase(model, volumes, segmentation, folder, overwrite=True)
            logic.addTrainingCase(model, volumes, segmentation, folder, case="second")
            self.assertEqual(trainingcases.list_cases(folder, model.modalities),
                             sorted([os.path.basename(first), "second"]))
            # nothing of the scene changed: names, modified state, no storage file pointing into the folder
            self.assertEqual([v.GetName() for v in volumes.values()], names)
            self.assertEqual([v.GetModifiedSinceRead() for v in volumes.values()], modified)
            renamed = segmentation.GetSegmentation().AddEmptySegment("Segment_1")
            with self.assertRaises(Exception):  # a segment that matches no target is refused
                logic.addTrainingCase(model, volumes, segmentation, folder, case="third")
            segmentation.GetSegmentation().RemoveSegment(renamed)
            self.delayDisplay("Fine-tuning two steps")
            name = fine_tuned_name(model.name, datetime.date.today())
            training = logic.train(folder, model.path, steps=2, name=name, wait=True)
            self.assertEqual(training.status, "done", training.error)
            self.assertTrue(os.path.basename(training.model.path).startswith(name))
            self.assertIn(training.model.path, [m.path for m in logic.findModels()[0]])
            again = logic.segment(training.model, volumes, heatMaps=False, wait=True)
            self.assertEqual(again.status, "done", again.error)
            rows = cases.compareRows(model, segmentation, {"before": job.segmentation, "after": again.segmentation},
                                     job.reference)
            self.assertEqual([row[0] for row in rows], model.targets)
            shutil.rmtree(training.model.path, ignore_errors=True)  # the test's model leaves the list again
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.delayDisplay("Test passed")

    def requireDependencies(self):
        """Install the worker's packages if missing and allowed (``requirements.selftest_install``:
        under CTest only with CIML_SELFTEST_INSTALL=1), or skip with the reason."""
        action, reason = selftest_install(slicer.app.testingEnabled(), os.environ.get(SELFTEST_INSTALL_VARIABLE),
                                          install.missingPackages())
        if action == "skip":
            self.skipTest(reason)
        if action == "ready":
            return
        try:
            # No confirmation under CTest (--testing, asked for by the variable); Reload and Test asks.
            install.installDependencies(ask=not slicer.app.testingEnabled())
        except install.Declined:
            self.skipTest("installing the worker's packages was declined")
        except install.DependencyError as exc:
            self.skipTest(f"the worker's packages cannot be installed: {exc}")
