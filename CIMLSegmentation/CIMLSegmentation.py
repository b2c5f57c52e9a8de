"""CIML Segmentation: multimodal tumour segmentation with per-modality heat maps.

Thin module file: metadata, a widget that loads the .ui and hands it to the panel, a headless
logic, and the self-test. The network runs in a separate worker process (``python -m ciml``),
so torch never loads into Slicer; everything else lives in CIMLSegmentationLib. Imports qt,
slicer and the Slicer-side CIMLSegmentationLib modules at the top (this file only runs in Slicer).
"""

import os
import subprocess
import tempfile

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from CIMLSegmentationLib import models as modelsLib
from CIMLSegmentationLib.parameters import CIMLSegmentationParameterNode
from CIMLSegmentationLib.process import python_executable
from CIMLSegmentationLib.segmentation import SegmentationJob
from CIMLSegmentationLib.training import TrainingJob
from CIMLSegmentationLib.widget import Panel

MODULE_DIR = os.path.dirname(__file__)


def pollTimer(intervalMs, callback):
    """The timer that drives a background job's poll() from Slicer's event loop."""
    timer = qt.QTimer()
    timer.setInterval(intervalMs)
    timer.connect("timeout()", callback)
    return timer


class CIMLSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CIML Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["CIMLSegmentation developers"]
        self.parent.helpText = (
            "Segments tumours from several modalities at once (the MRI sequences of a brain scan, or "
            "PET with CT) and shows, per modality, a heat map of what it contributed. Choose a model, "
            "check the volume chosen for each modality, and press Apply: the network runs in the "
            "background and can be cancelled.<br><br>"
            "The network is CIML (complementary information mutual learning: Shen et al., Neural "
            "Networks 2024, arXiv 2401.02717); the network here is this project's interpretation of "
            "the published abstract. Also offered: MAML (Zhang et al., MICCAI 2021), PASSION "
            "(Shi et al., ACM MM 2024) for missing modalities, DTC (Luo et al., AAAI 2021) for "
            "semi-supervised training. "
            '<a href="https://github.com/ciml-segmentation/SlicerCIMLSegmentation/blob/main/docs/slicer-module.md">User guide</a>.')
        self.parent.acknowledgementText = (
            "Built on 3D Slicer, PyTorch, MONAI and SimpleITK. The CIML, MAML, PASSION and DTC methods "
            "are the work of their authors, cited above; any error in their interpretation is ours.")


class CIMLSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui and hands it to the panel; keeps the parameter node across scene closes."""

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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda *a: self.setParameterNode(None))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *a: self.enter())

    def enter(self):
        self.setParameterNode(self.logic.getParameterNode())

    def exit(self):
        self.setParameterNode(None)

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

    def segment(self, model, volumes, segmentation=None, device="auto", heatMaps=True, wait=False,
                onProgress=None, onFinished=None):
        """Run the model on {modality: volume node}; returns the SegmentationJob."""
        job = SegmentationJob(model, volumes, segmentation, MODULE_DIR, device, heatMaps, timer=pollTimer,
                              onProgress=onProgress, onFinished=onFinished).start()
        return job.wait() if wait else job

    def train(self, dataFolder, baseModel=None, steps=None, wait=False, onProgress=None, onFinished=None):
        """Fine-tune on a dataset folder; returns the TrainingJob. On success its bundle is copied
        into the models folder (``job.model``)."""
        job = TrainingJob(MODULE_DIR, dataFolder, self.modelsFolder(), baseModel, steps, timer=pollTimer,
                          onProgress=onProgress, onFinished=onFinished).start()
        return job.wait() if wait else job

    def showChart(self, chart):
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        layoutManager.plotWidget(0).mrmlPlotViewNode().SetPlotChartNodeID(chart.GetID())


class CIMLSegmentationTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the built-in model on a generated BraTS-like case."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_sample_case()

    def test_segment_sample_case(self):
        logic = CIMLSegmentationLogic()
        model = modelsLib.read_model(logic.builtinModels[0], origin="built-in")
        folder = tempfile.mkdtemp(prefix="ciml-selftest-")
        self.delayDisplay("Generating a sample case with the worker")
        subprocess.run([python_executable(), "-m", "ciml", "sample-data", "--kind", "brats", "--cases", "1",
                        "--out", folder], check=True, env=dict(os.environ, PYTHONPATH=MODULE_DIR))
        files = [os.path.join(root, f) for root, _, names in os.walk(folder) for f in names]
        volumes = {}
        for modality in model.modalities:
            path = next(f for f in files if os.path.basename(f).split(".")[0].lower().endswith("_" + modality))
            volumes[modality] = slicer.util.loadVolume(path)
        self.delayDisplay("Running the built-in model")
        job = logic.segment(model, volumes, wait=True)
        self.assertEqual(job.status, "done", job.error)
        segmentation = job.segmentation.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, model.targets)
        self.assertEqual(len(job.heatMaps), len(model.modalities))
        self.delayDisplay("Test passed")
