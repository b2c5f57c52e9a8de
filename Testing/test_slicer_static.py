"""Static checks of the Slicer glue against the real Slicer 5.13 API index (Testing/data/slicer-api):
the shared conformance checker when this machine has it, and the project's own check always."""

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "CIMLSegmentation"
API = Path(__file__).resolve().parent / "data" / "slicer-api"
SHARED_CHECKER = Path("/work/shared/tools/check_slicer_module.py")
SLICER_FILES = [MODULE / "CIMLSegmentation.py"] + sorted((MODULE / "CIMLSegmentationLib").glob("*.py"))


@pytest.mark.skipif(not SHARED_CHECKER.exists(), reason="the shared checker exists only on the build machines")
def test_shared_conformance_checker():
    done = subprocess.run([sys.executable, str(SHARED_CHECKER), str(API)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert "0 problems" in done.stdout


def _ui_names():
    tree = ET.parse(MODULE / "Resources" / "UI" / "CIMLSegmentation.ui")
    return {w.get("name") for w in tree.iter("widget")}


def _util_names():
    names = set()
    for line in (API / "slicer-python-api.txt").read_text().splitlines():
        match = re.match(r"^(?:class )?slicer\.util\.(\w+)", line)
        if match:
            names.add(match.group(1))
    return names


def test_ui_names_util_names_and_no_torch_in_slicer():
    ui, util = _ui_names(), _util_names()
    problems = []
    for path in SLICER_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and isinstance(node.value.value, ast.Name):
                owner = (node.value.value.id, node.value.attr)
                if owner == ("self", "ui") and node.attr not in ui:
                    problems.append(f"{path.name}: self.ui.{node.attr} is not in the .ui")
                if owner == ("slicer", "util") and node.attr not in util:
                    problems.append(f"{path.name}: slicer.util.{node.attr} is not in Slicer")
            if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
                problems += [f"{path.name}: slicer.util.{a.name} is not in Slicer" for a in node.names if a.name not in util]
            # torch/monai must never load in Slicer's process, not even inside a function
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            problems += [f"{path.name}: imports {m}" for m in modules if m.split(".")[0] in ("torch", "monai", "ciml")]
        if len(path.read_text().splitlines()) > 400:
            problems.append(f"{path.name}: over 400 lines")
    assert problems == []


def test_ui_parses_and_has_the_sections():
    names = _ui_names()
    for name in ("modelComboBox", "loadBundleButton", "modelSummaryLabel", "inputsPlaceholder", "roleTableWidget",
                 "outputSegmentationSelector", "computeHeatMapsCheckBox", "deviceComboBox", "applyButton",
                 "progressBar", "statusLabel", "elapsedLabel", "relationsTableWidget", "heatMapComboBox",
                 "heatMapOpacitySlider", "trainingDataPathLineEdit", "trainingBaseModelComboBox",
                 "trainingStepsSpinBox", "trainButton", "trainingProgressBar", "trainingStatusLabel"):
        assert name in names
    text = (MODULE / "Resources" / "UI" / "CIMLSegmentation.ui").read_text()
    params = set(re.findall(r'name="SlicerParameterName">\s*<string>(\w+)</string>', text))
    declared = set(re.findall(r"^    (\w+): ", (MODULE / "CIMLSegmentationLib" / "parameters.py").read_text(), re.M))
    assert params and params <= declared  # every GUI-bound name is a parameter-node field


def test_plain_lib_modules_import_without_slicer():
    code = ("import sys; sys.path.insert(0, %r); "
            "import CIMLSegmentationLib.models, CIMLSegmentationLib.roles, CIMLSegmentationLib.progress, "
            "CIMLSegmentationLib.process, CIMLSegmentationLib.training, CIMLSegmentationLib.results, "
            "CIMLSegmentationLib.export, CIMLSegmentationLib.install; "
            "assert not {'slicer', 'qt', 'vtk', 'torch'} & set(sys.modules)" % str(MODULE))
    subprocess.run([sys.executable, "-c", code], check=True)
