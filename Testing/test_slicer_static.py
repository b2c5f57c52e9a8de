"""Static checks of the Slicer glue against the real Slicer 5.13 API index (Testing/data/slicer-api)."""

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "CIMLSegmentation"
API = Path(__file__).resolve().parent / "data" / "slicer-api"
SLICER_FILES = [MODULE / "CIMLSegmentation.py"] + sorted((MODULE / "CIMLSegmentationLib").glob("*.py"))
# The core's torch-free layer, the only part of ``ciml`` that Slicer's own process may import
# (never ciml.bundle.weights, ciml.data, ciml.nn, ciml.inference...: they load torch or numpy).
CORE_FOR_SLICER = {"ciml.choices", "ciml.errors", "ciml.config", "ciml.bundle", "ciml.bundle.metadata"}
PLAIN_LIB = ["models", "roles", "report", "geometry", "requirements", "progress", "process", "job", "training"]
SLICER_ONLY_LIB = ["install", "parameters", "export", "results", "segmentation", "widget"]
# Imports that must stay inside a function (each with a comment saying why): file -> modules
LAZY_IMPORTS = {"install.py": {"PyTorchUtils"}}


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
            # torch/monai must never load in Slicer's process, not even inside a function; of ciml,
            # only the torch-free layer
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            problems += [f"{path.name}: imports {m}" for m in modules if m.split(".")[0] in ("torch", "monai")
                         or m.split(".")[0] == "ciml" and m not in CORE_FOR_SLICER]
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
            "import %s; "
            "assert not {'slicer', 'qt', 'vtk', 'torch'} & set(sys.modules)"
            % (str(MODULE), ", ".join("CIMLSegmentationLib." + m for m in PLAIN_LIB)))
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_lib_module_is_plain_or_slicer_only_and_imports_at_the_top():
    lib = MODULE / "CIMLSegmentationLib"
    assert sorted(PLAIN_LIB + SLICER_ONLY_LIB) == sorted(p.stem for p in lib.glob("*.py") if p.stem != "__init__")
    problems = []
    for path in SLICER_FILES:
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                problems += [f"{path.name}:{node.lineno}: imports {n} inside a function" for n in names
                             if n not in LAZY_IMPORTS.get(path.name, set())]
    for name in SLICER_ONLY_LIB:  # Slicer-only modules say so by importing slicer at the top
        tree = ast.parse((lib / f"{name}.py").read_text())
        imported = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names} | \
            {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
        if "slicer" not in imported:
            problems.append(f"{name}.py: Slicer-only but does not import slicer at the top")
    assert problems == []
