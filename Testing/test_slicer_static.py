"""Static checks of the Slicer glue against the index of the real Slicer API at every supported
version, 5.8.1 to 5.13.0 (Testing/data/slicer-api/<version>/)."""

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
VERSIONS = sorted((d.name for d in API.iterdir() if d.is_dir()), key=lambda v: tuple(int(x) for x in v.split(".")))
OLDEST = "5.8.1"
SLICER_FILES = [MODULE / "CIMLSegmentation.py"] + sorted((MODULE / "CIMLSegmentationLib").glob("*.py"))
# The core's torch-free layer, the only part of ``ciml`` that Slicer's own process may import
# (never ciml.bundle.weights, ciml.data, ciml.nn, ciml.inference...: they load torch or numpy).
CORE_FOR_SLICER = {"ciml.choices", "ciml.errors", "ciml.config", "ciml.bundle", "ciml.bundle.metadata"}
PLAIN_LIB = ["models", "roles", "report", "geometry", "requirements", "progress", "process", "job", "training",
             "naming", "samplecase"]
SLICER_ONLY_LIB = ["install", "parameters", "export", "results", "segmentation", "widget", "sampledata"]
# Imports that must stay inside a function (each with a comment saying why): file -> modules
LAZY_IMPORTS = {"install.py": {"PyTorchUtils"}, "sampledata.py": {"SampleData"}}


def _ui_names():
    tree = ET.parse(MODULE / "Resources" / "UI" / "CIMLSegmentation.ui")
    return {w.get("name") for w in tree.iter("widget")}


def _util_names(version):
    names = set()
    for line in (API / version / "slicer-python-api.txt").read_text().splitlines():
        match = re.match(r"^(?:class )?slicer\.util\.(\w+)", line)
        if match:
            names.add(match.group(1))
    return names


def _method_names(version):
    """MRML/logic methods and qMRML widget methods and properties of one version."""
    text = (API / version / "slicer-mrml-api.txt").read_text()
    names = set(re.findall(r"^\s+\w+\.(\w+)$", text, re.M))
    text = (API / version / "slicer-widgets-api.txt").read_text()
    return names | set(re.findall(r"^\s+(?:method|property|signal) \w+\.(\w+)$", text, re.M))


def _color_ids(version):
    return set(re.findall(r"^(vtkMRML\S+)$", (API / version / "slicer-color-ids.txt").read_text(), re.M))


def test_the_index_holds_every_supported_version():
    assert VERSIONS == ["5.8.1", "5.10.0", "5.12.3", "5.13.0"]
    for version in VERSIONS:
        files = sorted(p.name for p in (API / version).iterdir())
        assert files == ["slicer-color-ids.txt", "slicer-mrml-api.txt", "slicer-python-api.txt",
                         "slicer-widgets-api.txt"], version
        assert version in (API / version / "slicer-mrml-api.txt").read_text().splitlines()[0]


def _name_problems(version, sources):
    """What {file name: source} uses of Slicer that this version lacks: slicer.util names, MRML
    and widget methods (unless the file guards the call with hasattr), colour node IDs."""
    util, methods, colors = _util_names(version), _method_names(version), _color_ids(version)
    # Methods are matched by name only, so a name is judged only where it is new since 5.8.1 (a
    # name 5.8.1 has but a later index lacks, e.g. vtkMRMLColorNode.SetFileName, may still be
    # another class's: storage nodes have SetFileName in every version).
    newer = set().union(*(_method_names(v) for v in VERSIONS)) - _method_names(OLDEST)
    problems = []
    for name, source in sources.items():
        guarded = set(re.findall(r"hasattr\([^,]+,\s*[\"'](\w+)[\"']\)", source))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and isinstance(node.value.value, ast.Name) and (node.value.value.id, node.value.attr) == \
                    ("slicer", "util") and node.attr not in util:
                problems.append(f"{name}:{node.lineno}: slicer.util.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
                problems += [f"{name}:{node.lineno}: slicer.util.{a.name}" for a in node.names if a.name not in util]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method = node.func.attr
                if method in newer and method not in methods and method not in guarded:
                    problems.append(f"{name}:{node.lineno}: {method}() (unguarded)")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for cid in re.findall(r"vtkMRML\w*(?:ColorTableNode|ProceduralColorNode)[\w.-]*", node.value):
                    if cid not in colors:
                        problems.append(f"{name}:{node.lineno}: colour node {cid}")
    return problems


@pytest.mark.parametrize("version", VERSIONS)
def test_every_slicer_name_the_module_uses_exists_in(version):
    assert _name_problems(version, {p.name: p.read_text() for p in SLICER_FILES}) == [], \
        f"missing in Slicer {version}"


def test_the_version_check_finds_what_5_8_lacks():
    """The check above can fail: on the two calls issue 18 found, and not on their fixes."""
    bad = {"bad.py": "import slicer\n"
                     "segment.SetTerminology(entry)\n"
                     "display.SetAndObserveColorNodeID('vtkMRMLColorTableNodeInferno')\n"
                     "slicer.util.noSuchFunction()\n"}
    assert _name_problems("5.8.1", bad) == ["bad.py:2: SetTerminology() (unguarded)",
                                            "bad.py:3: colour node vtkMRMLColorTableNodeInferno",
                                            "bad.py:4: slicer.util.noSuchFunction"]
    assert _name_problems("5.12.3", bad) == ["bad.py:3: colour node vtkMRMLColorTableNodeInferno",
                                             "bad.py:4: slicer.util.noSuchFunction"]
    good = {"good.py": "segment.SetTag(segment.GetTerminologyEntryTagName(), entry)\n"
                       "if hasattr(segment, 'SetTerminology'):\n    segment.SetTerminology(entry)\n"
                       "display.SetAndObserveColorNodeID('vtkMRMLColorTableNodeFileInferno.txt')\n"}
    assert all(_name_problems(v, good) == [] for v in VERSIONS)


def test_ui_names_util_names_and_no_torch_in_slicer():
    ui, util = _ui_names(), set.intersection(*(_util_names(v) for v in VERSIONS))
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
        # at the top: the module's own statements, and a module-level try/except ImportError
        # (the form for a package only some Slicer versions have)
        top = {id(node) for node in tree.body} | {id(child) for node in tree.body if isinstance(node, ast.Try)
                                                   for child in node.body + [c for h in node.handlers for c in h.body]}
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
