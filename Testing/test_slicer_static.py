"""Static checks of the Slicer module against the index of the real Slicer API at every supported
version, 5.8.1 to 5.13.0 (Testing/data/slicer-api/<version>/), and of its two halves: no file of
the plain half (CIMLSegmentationLib/*.py) imports Slicer, Qt, VTK, CTK or MRML; every file that
does is in the glue (CIMLSegmentationLib/slicerglue/)."""

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
LIB = MODULE / "CIMLSegmentationLib"
GLUE = LIB / "slicerglue"
# The two halves: plain Python in the Lib's own folder, the glue (everything that imports Slicer)
# in its sub-package.
PLAIN_FILES = sorted(LIB.glob("*.py"))
GLUE_FILES = sorted(GLUE.glob("*.py"))
SLICER_FILES = [MODULE / "CIMLSegmentation.py"] + PLAIN_FILES + GLUE_FILES
# Slicer's own modules: Slicer, its Qt and VTK, CTK, and MRML (slicer.vtkMRML..., or the
# vtkMRML.../qMRML.../qSlicer... modules of Slicer's Python).
SLICER_MODULES = ("slicer", "qt", "vtk", "ctk", "mrml")
SLICER_PREFIXES = ("vtkMRML", "vtkSlicer", "vtkSegmentation", "qMRML", "qSlicer", "ctk")
# The core's torch-free layer, the only part of ``ciml`` that Slicer's own process may import
# (never ciml.bundle.weights, ciml.data, ciml.nn, ciml.inference...: they load torch or numpy).
CORE_FOR_SLICER = {"ciml.choices", "ciml.errors", "ciml.config", "ciml.bundle", "ciml.bundle.metadata"}
# Imports that must stay inside a function (each with a comment saying why): file -> modules
LAZY_IMPORTS = {"sampledata.py": {"SampleData"}}


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
    """The check above can fail: on a call 5.8 lacks, a colour node ID without its file name and
    an unknown slicer.util function, and not on their fixes."""
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
                 "trainingMinutesSpinBox", "trainButton", "trainingProgressBar", "trainingStatusLabel"):
        assert name in names
    text = (MODULE / "Resources" / "UI" / "CIMLSegmentation.ui").read_text()
    params = set(re.findall(r'name="SlicerParameterName">\s*<string>(\w+)</string>', text))
    declared = set(re.findall(r"^    (\w+): ", (GLUE / "parameters.py").read_text(), re.M))
    assert params and params <= declared  # every GUI-bound name is a parameter-node field


def _imported(tree, top_only=False):
    """The modules a file imports (at the top only, or anywhere), by their full dotted names;
    ``from slicer import vtkMRMLScalarVolumeNode`` also names ``slicer.vtkMRMLScalarVolumeNode``."""
    nodes = tree.body if top_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Try) and top_only:  # a module-level try/except ImportError
            names |= _imported(ast.Module(body=node.body + [c for h in node.handlers for c in h.body],
                                          type_ignores=[]), top_only=True)
    return names


def _slicer_imports(tree, top_only=False):
    return sorted(n for n in _imported(tree, top_only) if n.split(".")[0] in SLICER_MODULES
                  or any(part.startswith(SLICER_PREFIXES) for part in n.split(".")))


def _half_problems(plain, glue):
    """{file name: source} of each half -> what breaks the rule: no plain file imports Slicer,
    Qt, VTK, CTK or MRML (not even inside a function), and every glue file imports Slicer at the
    top (a file that does not belongs to the plain half)."""
    problems = [f"{name}: plain, but imports {', '.join(_slicer_imports(ast.parse(source)))}"
                for name, source in plain.items() if _slicer_imports(ast.parse(source))]
    problems += [f"slicerglue/{name}: glue, but imports no Slicer module at the top"
                 for name, source in glue.items() if name != "__init__.py"
                 and not _slicer_imports(ast.parse(source), top_only=True)]
    return problems


def test_the_plain_half_imports_no_slicer_and_the_glue_half_does():
    assert {p.name for p in GLUE_FILES} >= {"__init__.py", "widget.py", "results.py"} and len(PLAIN_FILES) > 5
    assert _half_problems({p.name: p.read_text() for p in PLAIN_FILES},
                          {p.name: p.read_text() for p in GLUE_FILES}) == []
    # the sub-packages of the Lib are the glue only: a file elsewhere would escape both checks
    assert [p.relative_to(LIB) for p in LIB.rglob("*.py") if p.parent not in (LIB, GLUE)] == []


def test_the_half_check_finds_a_file_on_the_wrong_side():
    plain = {"good.py": "import os\nfrom .report import relations_table\n",
             "lazy.py": "def f():\n    import qt\n",
             "mrml.py": "from slicer import vtkMRMLScalarVolumeNode\n",
             "ctk.py": "import ctk\n"}
    glue = {"__init__.py": '"""The glue."""\n', "widget.py": "import qt\nimport slicer\n",
            "parameters.py": "from slicer.parameterNodeWrapper import parameterNodeWrapper\n",
            "plainglue.py": "from ..report import relations_table\n",
            "lazyglue.py": "def f():\n    import slicer\n"}
    assert _half_problems(plain, glue) == [
        "lazy.py: plain, but imports qt", "mrml.py: plain, but imports slicer, slicer.vtkMRMLScalarVolumeNode",
        "ctk.py: plain, but imports ctk", "slicerglue/plainglue.py: glue, but imports no Slicer module at the top",
        "slicerglue/lazyglue.py: glue, but imports no Slicer module at the top"]


def test_plain_lib_modules_import_without_slicer():
    code = ("import sys; sys.path.insert(0, %r); "
            "import %s; "
            "assert not {'slicer', 'qt', 'vtk', 'ctk', 'torch'} & set(sys.modules)"
            % (str(MODULE), ", ".join("CIMLSegmentationLib." + p.stem for p in PLAIN_FILES if p.stem != "__init__")))
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_lib_module_imports_at_the_top():
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
    assert problems == []
