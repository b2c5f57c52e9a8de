"""What the module decides about installing the worker's packages, on plain values: the
self-test's install decision (CTest never installs gigabytes unless asked), torch installed by a
process of Slicer's Python (never imported into Slicer), and one error dialog for a failed pip."""

import ast

import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)

from CIMLSegmentationLib import requirements
from CIMLSegmentationLib.requirements import selftest_install

GLUE = slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib" / "slicerglue"
MISSING = ["torch", "monai"]


@pytest.mark.parametrize("testing, setting, action", [
    (True, None, "skip"),      # CTest on an extensions build machine: skip, saying why
    (True, "1", "install"),    # CTest, installing asked for
    (True, "0", "skip"),
    (False, None, "install"),  # Reload and Test: install, after asking
    (False, "0", "skip"),
    (False, "1", "install"),
])
def test_the_self_test_installs_only_where_it_may(testing, setting, action):
    decided, reason = selftest_install(testing, setting, MISSING)
    assert decided == action
    assert (reason != "") == (action == "skip")
    if action == "skip":
        assert "torch, monai" in reason and "CIML_SELFTEST_INSTALL" in reason


def test_nothing_missing_is_ready_whatever_the_setting():
    assert selftest_install(True, None, []) == ("ready", "")
    assert selftest_install(False, "0", []) == ("ready", "")


def test_torch_is_installed_by_processes_of_slicers_python():
    commands = requirements.torch_install_commands("/s/PythonSlicer")
    assert commands == [["/s/PythonSlicer", "-m", "pip", "install", "light-the-torch>=0.5"],
                        ["/s/PythonSlicer", "-m", "light_the_torch", "install", "torch>=2.2"]]


def test_no_slicer_file_imports_torch_or_calls_the_pytorch_extensions_import():
    """PyTorchUtilsLogic.installTorch (and its .torch) import torch into Slicer's process."""
    files = sorted(GLUE.glob("*.py")) + [slicer_lib_helpers.MODULE_DIR / "CIMLSegmentation.py"]
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] in ("torch", "PyTorchUtils")]
            if isinstance(node, ast.Attribute) and node.attr in ("installTorch", "importTorch"):
                found.append(f"{path.name}: {node.attr}")
    assert found == []


def test_a_failure_already_shown_is_marked_so_and_the_glue_does_not_show_it_again():
    assert requirements.DependencyError("x").shown is False
    assert requirements.DependencyError("x", shown=True).shown is True
    source = (GLUE / "install.py").read_text()
    ensure = source[source.index("def ensureDependencies"):source.index("def missingPackages")]
    assert ensure.index("if exc.shown") < ensure.index("errorDisplay")
