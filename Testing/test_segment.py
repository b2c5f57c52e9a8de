"""`ciml segment` end to end, as the Slicer module runs it: a subprocess on sample data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import tiny

from ciml.config import card_from_dict, preset_dict
from ciml.data.case import Case
from ciml.data.geometry import Geometry
from ciml.inference.segment import gate_report
from ciml.nn import build_network

from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.research.targets import UNSEEN_SEED
from ciml.resources import builtin_model

MODALITIES = ("t1", "t1ce", "t2", "flair")
# The built-in model's documented Dice on unseen phantom cases (`ciml evaluate` on
# `ciml sample-data --kind brats --cases 6 --seed 99`, its command in the file): the test segments
# the first of them, and `ciml segment` must score what `ciml evaluate` recorded for it, within a
# margin for floating-point differences between machines. A broken model or pipeline scores near 0.
UNSEEN = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "builtin-phantom-unseen.json")
                    .read_text(encoding="utf-8"))
FIRST = next(c for c in UNSEEN["results"]["cases"] if c["case"] == case_ids("brats", 1)[0])
DICE_FLOOR = {t: d - 0.02 for t, d in FIRST["dice"].items()}


def _case(root: Path, size: str = "small", seed: int = UNSEEN_SEED) -> Path:
    folder = root / case_ids("brats", 1)[0]
    if not folder.exists():
        write_case(generate_case("brats", 0, seed=seed, size=size), root)
    return folder


def _inputs(case: Path, names=MODALITIES) -> list[str]:
    args = []
    for m in names:
        args += ["--input", f"{m}={case / f'{case.name}_{m}.nii.gz'}"]
    return args


def _segment(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ciml", "segment", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    case = _case(root / "case")
    out = root / "out"
    run = _segment("--model", str(builtin_model()), *_inputs(case), "--out", str(out), "--progress", "json",
                   "--maps", "all", "--per-target")
    assert run.returncode == 0, run.stderr
    return case, out, run


def _geometry(image: sitk.Image):
    return image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()


def test_outputs_have_the_reference_geometry_and_the_cards_labels(segmented):
    case, out, _ = segmented
    reference = sitk.ReadImage(str(case / f"{case.name}_t1ce.nii.gz"))
    seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    assert _geometry(seg) == _geometry(reference)
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2, 4}
    for name in [f"cam_{m}" for m in MODALITIES] + [f"cam_{t}_{m}" for t in ("WT", "TC", "ET") for m in MODALITIES]:
        cam = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert _geometry(cam) == _geometry(reference), name
        values = sitk.GetArrayFromImage(cam)
        assert values.min() >= 0.0 and values.max() <= 1.0 + 1e-6, name
    for name in [f"effect_{m}" for m in MODALITIES] + [f"effect_{t}_{m}" for t in ("WT", "TC", "ET") for m in MODALITIES]:
        effect = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert _geometry(effect) == _geometry(reference), name
        values = sitk.GetArrayFromImage(effect)
        assert values.min() >= -1.0 - 1e-6 and values.max() <= 1.0 + 1e-6, name
    assert not list(out.glob(".ciml-*")), "no temporary files left"


def test_dice_against_the_known_label_is_above_the_floor(segmented):
    case, out, _ = segmented
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / f"{case.name}_seg.nii.gz")))
    for target, labels in {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}.items():
        a, b = np.isin(pred, labels), np.isin(truth, labels)
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice >= DICE_FLOOR[target], (target, dice)


def test_report_is_complete(segmented):
    _, out, _ = segmented
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"model", "inputs", "device", "timings_s", "targets", "warnings", "outputs", "reference"}
    assert set(report["timings_s"]) == {"loading model", "reading images", "segmenting", "writing"}
    for t in ("WT", "TC", "ET"):
        entry = report["targets"][t]
        assert entry["voxels"] > 0 and entry["volume_ml"] > 0
        assert set(entry["contributions"]) == set(MODALITIES)
        # withholding a target's primary changes it most (FLAIR for WT, T1ce for TC and ET)
        primary = "flair" if t == "WT" else "t1ce"
        assert max(entry["contributions"], key=entry["contributions"].get) == primary, (t, entry["contributions"])
    assert report["device"] == "cpu"
    # what each of the 24 gates (2 sub-tasks x 3 auxiliaries x 4 levels) passes, on the central window
    assert len(report["gates"]) == 24 and {g["level"] for g in report["gates"]} == {0, 1, 2, 3}
    assert all(0 <= g["message_ratio"] and isinstance(g["collapsed"], bool) for g in report["gates"])


def test_json_progress_is_valid_line_by_line_and_reaches_done(segmented):
    _, _, run = segmented
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["event"] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    assert {e["stage"] for e in events if e["event"] == "progress"} >= {"loading model", "segmenting", "writing"}


@pytest.mark.parametrize("drop,add,message", [
    (MODALITIES, (), "no input for sub-task whole"),
    ((), ("pet",), "--input pet: the model 'brats-sample' has no modality"),
])
def test_a_sub_task_without_input_or_an_extra_input_is_refused_before_work(segmented, tmp_path, drop, add, message):
    case, _, _ = segmented
    args = _inputs(case, [m for m in MODALITIES if m not in drop])
    args += [arg for m in add for arg in ("--input", f"{m}={case / f'{case.name}_t1.nii.gz'}")]
    run = _segment("--model", str(builtin_model()), *args, "--out", str(tmp_path / "o"), "--progress", "json")
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["event"] == "error"
    assert not (tmp_path / "o").exists()


def test_a_bundle_for_other_modalities_is_refused(segmented, tmp_path):
    case, _, _ = segmented
    other = tmp_path / "autopet"
    subprocess.run([sys.executable, "-m", "ciml", "init", "--preset", "autopet", "--out", str(other)], check=True,
                   capture_output=True)
    run = _segment("--model", str(other), *_inputs(case), "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and "has no modality of that name" in run.stderr


def test_a_missing_input_file_is_one_line(segmented, tmp_path):
    case, _, _ = segmented
    args = _inputs(case)
    args[-1] = "flair=/nonexistent/flair.nii.gz"
    run = _segment("--model", str(builtin_model()), *args, "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and "flair=/nonexistent/flair.nii.gz" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_sigterm_stops_cleans_up_and_keeps_earlier_outputs(segmented, tmp_path):
    case, out, _ = segmented
    big = _case(tmp_path / "big", size="full")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "ciml", "segment", "--model", str(builtin_model()),
                             *_inputs(big), "--out", str(out), "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if json.loads(line).get("stage") == "reading images":
            break
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 3.0
    assert proc.returncode != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "earlier outputs intact, no temporary files"


def test_nrrd_output(segmented, tmp_path):
    case, _, _ = segmented
    run = _segment("--model", str(builtin_model()), *_inputs(case), "--out", str(tmp_path / "o"), "--format", "nrrd",
                   "--no-cam", "--progress", "none")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["report.json", "segmentation.nrrd"]


def test_the_reports_gates_are_measured_on_a_central_window_of_at_most_64_voxels_an_axis():
    card = card_from_dict(tiny(preset_dict("brats"), features=[4, 8, 16, 32]))
    net = build_network(card).eval()
    seen = []
    net.encoders[card.modality_names[0]].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[2:]))
    image = np.random.default_rng(0).normal(size=(len(card.modalities), 150, 40, 100)).astype(np.float32)
    grid = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), image.shape[1:])
    case = Case("x", image, grid, grid)
    for roi, expected in (([128, 128, 128], (64, 64, 64)), ([16, 96, 72], (16, 64, 64))):
        report = gate_report(net, case, replace(card, inference=replace(card.inference, roi_size=roi)), torch.device("cpu"))
        assert len(report) == len(net.gate_keys()) and tuple(seen[-1]) == expected
