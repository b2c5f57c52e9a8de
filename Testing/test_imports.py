"""The import rule (docs/developers.md): the command-line parser and the card/bundle-metadata
layer import no torch and no numpy; everything else imports at the top of its module; the
shipped runtime never imports the research tools."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ciml.resources import builtin_model
from ciml.startup import HUGE_PAGES

PACKAGE = Path(__file__).resolve().parents[1] / "CIMLSegmentation" / "ciml"
# Optional packages, imported where used (each such import carries a comment saying why).
OPTIONAL = {"yaml", "matplotlib", "captum", "onnx", "onnxruntime"}
RUNTIME = ("bundle", "config", "data", "nn", "losses", "inference", "training", "evaluation")

BLOCKER = textwrap.dedent("""
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "numpy", "monai", "SimpleITK", "safetensors"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocked())
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_card_and_bundle_metadata_and_parser_import_without_torch_or_numpy():
    done = run_blocked(f"""
        import ciml.choices, ciml.config, ciml.bundle, ciml.cli.parser
        from ciml.bundle import read_card
        card = read_card({str(builtin_model())!r})
        assert card.reference == "t1ce", card.reference
        ciml.cli.parser.build_parser().parse_args(["segment", "--model", "m", "--out", "o"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))
        print("heavy:", heavy)
    """)
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout


@pytest.mark.parametrize("argv, expect", [
    (["--help"], "segment"),
    (["card", "--preset", "brats"], '"reference": "t1ce"'),
    (["segment", "--help"], "--input NAME=PATH"),
])
def test_help_and_card_run_without_torch(argv, expect):
    done = run_blocked(f"""
        from ciml.cli.main import main
        try:
            code = main({argv!r})
        except SystemExit as exit:  # --help exits through argparse
            code = exit.code
        sys.exit(code)
    """)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout


def test_a_command_needing_torch_says_so_in_one_line_when_torch_is_missing(tmp_path):
    done = run_blocked(f"""
        from ciml.cli.main import main
        sys.exit(main(["init", "--preset", "shapes", "--out", {str(tmp_path / "b")!r}]))
    """)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and "blocked" in done.stderr


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _root(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""]


def test_imports_are_at_the_top_except_optional_packages():
    nested = []
    for path, tree in _modules():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and not any(
                            name.split(".")[0] in OPTIONAL for name in _root(node)):
                        nested.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert nested == []


def test_the_shipped_runtime_never_imports_the_research_tools():
    offenders = []
    for path, tree in _modules():
        package = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if package not in RUNTIME:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                    name.startswith("ciml.research") or name.startswith("ciml.cli") for name in _root(node)):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_every_package_says_what_it_holds_and_may_import():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "import" in doc.lower(), f"{init.relative_to(PACKAGE)}: its docstring must say what it may import"


def test_segment_process_imports_monai_without_the_packages_it_never_uses(tmp_path):
    """A whole `ciml segment` process hides matplotlib, pandas, scikit-learn and scipy.signal while
    MONAI imports (its start-up), and they import as usual afterwards."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from ciml.startup import UNUSED_BY_SEGMENTING
        sys.argv = ["ciml", "segment", "--model", {str(builtin_model())!r}, "--out", {str(tmp_path)!r},
                    "--input", "t1ce=" + {str(tmp_path / "missing.nii.gz")!r}, "--progress", "none"]
        from ciml.cli.main import main
        code = main()
        assert code != 0, code  # the missing file is refused after the imports
        assert "monai" in sys.modules and "ciml.inference.segment" in sys.modules
        print("loaded:", sorted(p for p in UNUSED_BY_SEGMENTING if p in sys.modules))
        from monai.utils import optional_import
        print("monai sees matplotlib:", optional_import("matplotlib.pyplot")[1])
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.figure()
        print("matplotlib after:", "matplotlib.pyplot" in sys.modules)
    """)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
    assert "matplotlib after: True" in done.stdout


def test_import_monai_without_leaves_an_imported_package_alone():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        import matplotlib.pyplot
        from ciml.startup import import_monai_without
        import_monai_without(("matplotlib", "matplotlib.pyplot", "scipy.signal"))
        from monai.utils import optional_import
        print("matplotlib:", optional_import("matplotlib.pyplot")[1])
        print("scipy.signal hidden:", "scipy.signal" not in sys.modules)
        import scipy.signal
        print("scipy.signal after:", scipy.signal.get_window("hann", 4).shape)
    """)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "matplotlib: True" in done.stdout
    assert "scipy.signal hidden: True" in done.stdout and "scipy.signal after: (4,)" in done.stdout


def _huge_pages_on_request() -> bool:
    """Transparent huge pages given where a program asks (``madvise``): what PyTorch's switch does
    (with ``always`` every large mapping gets them anyway, with ``never`` none does)."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return mode.exists() and "[madvise]" in mode.read_text()


@pytest.mark.parametrize("preset, expect", [(None, "1"), ("0", "0")])
def test_segment_process_asks_for_huge_pages_before_torch_loads(tmp_path, preset, expect):
    """PyTorch reads THP_MEM_ALLOC_ENABLE at its first allocation: a whole `ciml segment` process
    sets it before torch is imported, and keeps a value the user set."""
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES}
    if preset is not None:
        env[HUGE_PAGES] = preset
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and "torch" not in sys.modules:
                    print("at torch import:", os.environ.get({HUGE_PAGES!r}))
                return None

        sys.meta_path.insert(0, Watch())
        sys.argv = ["ciml", "segment", "--model", {str(builtin_model())!r}, "--out", {str(tmp_path)!r},
                    "--input", "t1ce=" + {str(tmp_path / "missing.nii.gz")!r}, "--progress", "none"]
        from ciml.cli.main import main
        assert main() != 0  # the missing file is refused after the imports
    """)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"at torch import: {expect}"


@pytest.mark.skipif(not _huge_pages_on_request(), reason="transparent huge pages are not given on request here")
def test_torch_puts_large_tensors_on_huge_pages_when_asked():
    """The variable's name and effect, as PyTorch reads it: a 64 MiB tensor's memory shows as
    anonymous huge pages with it, and less (here none) without."""
    script = textwrap.dedent("""
        import re, torch
        before = int(re.search(r"AnonHugePages:\\s+(\\d+)", open("/proc/self/smaps_rollup").read())[1])
        x = torch.ones(16 * 1024 * 1024)
        after = int(re.search(r"AnonHugePages:\\s+(\\d+)", open("/proc/self/smaps_rollup").read())[1])
        print("huge KiB:", after - before)
    """)
    found = {}
    for value in ("0", "1"):
        env = {**os.environ, HUGE_PAGES: value}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        found[value] = int(done.stdout.split("huge KiB:")[1])
    assert found["1"] >= 2 * 1024 and found["1"] > found["0"], found  # at least one 2 MiB page, and more
