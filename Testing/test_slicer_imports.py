"""The Slicer module's plain modules run in a Python without torch, numpy, MONAI or SimpleITK,
as in Slicer's own process (where the network never loads): they import, and they read the
built-in bundle's card through the core's torch-free ``ciml.bundle``.

The blocker is installed in a fresh interpreter so it cannot leak into other tests.
"""

import subprocess
import sys
import textwrap

import slicer_lib_helpers

BLOCKED = ("torch", "numpy", "monai", "SimpleITK")
BLOCKER = textwrap.dedent(f"""
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked in this test")

    sys.meta_path.insert(0, Blocked())
    sys.path.insert(0, {str(slicer_lib_helpers.MODULE_DIR)!r})
""")
# The plain modules that work on image arrays (the training cases and the comparison): they use
# numpy and SimpleITK, which Slicer ships, and are imported by the glue only where it writes a
# case or compares results. Every other plain module needs neither.
ARRAY_MODULES = ("compare", "trainingcases")
# The plain half: every module of the Lib's own folder (the glue is in its sub-package slicerglue).
PLAIN = tuple(sorted(p.stem for p in (slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib").glob("*.py")
                     if p.stem != "__init__" and p.stem not in ARRAY_MODULES))


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_the_blocker_blocks():
    done = run_blocked("import numpy")
    assert done.returncode != 0 and "numpy is blocked in this test" in done.stderr


def test_plain_modules_read_the_builtin_bundle_without_torch_or_numpy():
    bundle = slicer_lib_helpers.SAMPLE_BUNDLE
    done = run_blocked(f"""
        import importlib
        for name in {PLAIN!r}:
            importlib.import_module("CIMLSegmentationLib." + name)
        from ciml.config import ModelCard
        from CIMLSegmentationLib import models, roles
        model = models.read_model({str(bundle)!r}, origin="built-in")
        assert isinstance(model.card, ModelCard), type(model.card)
        print("card:", model.card.name, model.reference, model.modalities, model.targets, model.trained)
        print("roles:", [(r.target, r.primary) for r in roles.role_table(model.card)])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r} + ("slicer", "qt", "vtk", "ctk")
                        or m == "ciml.bundle.weights")
        print("loaded:", loaded)
    """)
    assert done.returncode == 0, done.stderr
    assert {"models", "roles", "report", "job", "samplecase"} <= set(PLAIN) and "widget" not in PLAIN
    assert "card: brats-sample t1ce ['t1', 't1ce', 't2', 'flair'] ['WT', 'TC', 'ET'] True" in done.stdout
    assert "roles: [('WT', 'flair'), ('TC', 't1ce'), ('ET', 't1ce')]" in done.stdout
    assert "loaded: []" in done.stdout


def test_the_array_modules_import_with_numpy_and_simpleitk_but_never_torch_or_monai():
    done = subprocess.run([sys.executable, "-c", BLOCKER.replace(repr(BLOCKED), repr(("torch", "monai"))) + textwrap.dedent(f"""
        import importlib
        for name in {ARRAY_MODULES!r}:
            importlib.import_module("CIMLSegmentationLib." + name)
        print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "monai", "slicer", "qt", "vtk")))
    """)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
    plain = [p for p in PLAIN if any(f"import {m}" in (slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib" /
                                                         f"{p}.py").read_text() for m in ("numpy", "SimpleITK"))]
    assert plain == []
