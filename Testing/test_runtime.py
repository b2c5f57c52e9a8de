"""ONNX Runtime for the network's inference pieces: the same outputs as PyTorch, cached, and a
fallback to PyTorch with a note when the runtime is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ciml.bundle.weights import load_bundle
from ciml.data import load_case
from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.inference.effects import predict_withheld
from ciml.inference.sliding_window import predict_logits
from ciml.resources import builtin_model

MODALITIES = ("t1", "t1ce", "t2", "flair")
PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runtime-case")
    write_case(generate_case("brats", 0, seed=5, size="small"), root)
    return root / case_ids("brats", 1)[0]


def _inputs(case: Path) -> dict[str, str]:
    return {m: str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES}


def test_exported_runtime_equals_pytorch_on_the_builtin_model(phantom, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from ciml.inference.runtime import choose_runtime, probe_difference

    monkeypatch.setenv("CIML_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CIML_RUNTIME", "onnxruntime")
    bundle = load_bundle(builtin_model())
    choice = choose_runtime(bundle, torch.device("cpu"))
    assert choice.name == "onnxruntime", choice.note
    exports = list((tmp_path / "runtime").iterdir())
    assert len(exports) == 1 and (exports[0] / "checked.json").exists()
    assert probe_difference(bundle.network, choice.network, seed=7) <= PROBABILITY_TOLERANCE

    case = load_case(bundle.card, _inputs(phantom), allow_missing=True)
    image = torch.from_numpy(np.ascontiguousarray(case.image))
    cpu = torch.device("cpu")
    logits, withheld = predict_withheld(bundle.network, image, bundle.card, cpu)
    fast_logits, fast_withheld = predict_withheld(choice.network, image, bundle.card, cpu)
    for ours, theirs in ((logits, fast_logits), (withheld, fast_withheld)):
        assert float((torch.sigmoid(ours) - torch.sigmoid(theirs)).abs().max()) <= PROBABILITY_TOLERANCE
    assert np.array_equal(case.label_map(torch.sigmoid(logits).numpy(), bundle.card),
                          case.label_map(torch.sigmoid(fast_logits).numpy(), bundle.card))
    alone = predict_logits(choice.network, image, bundle.card, cpu)
    assert float((torch.sigmoid(alone) - torch.sigmoid(logits)).abs().max()) <= PROBABILITY_TOLERANCE

    # A second load reads the cached, checked export instead of exporting again.
    stamp = (exports[0] / "checked.json").stat().st_mtime_ns
    assert choose_runtime(bundle, cpu).name == "onnxruntime"
    assert (exports[0] / "checked.json").stat().st_mtime_ns == stamp


def _segment(case: Path, out: Path, cache: Path, runtime: str = "", without_onnxruntime: bool = False):
    """`ciml segment` in a fresh process; ``without_onnxruntime`` makes importing it fail there."""
    args = ["segment", "--model", str(builtin_model()), "--out", str(out), "--progress", "none",
            "--per-target"]
    for m, path in _inputs(case).items():
        args += ["--input", f"{m}={path}"]
    blocker = "import sys; sys.modules['onnxruntime'] = None; " if without_onnxruntime else "import sys; "
    code = blocker + f"import runpy; sys.argv = ['ciml', *{args!r}]; runpy.run_module('ciml', run_name='__main__')"
    env = {**os.environ, "CIML_CACHE_DIR": str(cache), "CIML_RUNTIME": runtime}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads((out / "report.json").read_text())


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_segment_gives_the_same_outputs_with_the_runtime_without_it_and_when_it_is_missing(phantom, tmp_path):
    pytest.importorskip("onnxruntime")
    fast = _segment(phantom, tmp_path / "fast", tmp_path / "cache", runtime="onnxruntime")
    eager = _segment(phantom, tmp_path / "eager", tmp_path / "cache")  # the default
    missing = _segment(phantom, tmp_path / "missing", tmp_path / "cache", runtime="onnxruntime",
                       without_onnxruntime=True)

    assert fast["runtime"] == {"name": "onnxruntime"}
    assert eager["runtime"] == {"name": "pytorch"}
    assert missing["runtime"]["name"] == "pytorch"
    assert "ONNX Runtime is not installed" in missing["runtime"]["note"]
    assert "\n" not in missing["runtime"]["note"]

    reference = _read(tmp_path / "eager" / "segmentation.nii.gz")
    assert reference.any()  # the comparison below must see a tumour
    for other in ("fast", "missing"):
        assert np.array_equal(_read(tmp_path / other / "segmentation.nii.gz"), reference)  # Dice 1.0
    maps = [name for name in eager["outputs"] if name.startswith("effect_")]
    assert len(maps) == 4 * (1 + 3)  # one per modality and one per (target, modality)
    for name in maps:
        ours, theirs = _read(tmp_path / "eager" / eager["outputs"][name]), _read(tmp_path / "fast" / fast["outputs"][name])
        assert np.abs(ours - theirs).max() <= PROBABILITY_TOLERANCE, name
        assert np.array_equal(_read(tmp_path / "missing" / missing["outputs"][name]), ours), name
    for target, values in eager["targets"].items():
        assert fast["targets"][target]["voxels"] == values["voxels"]
