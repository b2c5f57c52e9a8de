"""What each modality does: the withheld outputs equal real runs without the modality, maps stay
inside the body, and a case can be segmented with modalities absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import tiny

from ciml.config import card_from_dict, preset, preset_dict
from ciml.data import read_array
from ciml.data.foreground import body_mask
from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.inference.effects import WithheldPredictor
from ciml.inference.relations import strongest_effect
from ciml.inference.segment import SegmentRequest, absent_warnings, segment
from ciml.nn import CIMLNet
from ciml.resources import builtin_model

MODALITIES = ("t1", "t1ce", "t2", "flair")


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("effects-case")
    write_case(generate_case("brats", 0, seed=4242, size="small"), root)
    return root / case_ids("brats", 1)[0]


def _inputs(case: Path, names=MODALITIES) -> dict[str, str]:
    return {m: str(case / f"{case.name}_{m}.nii.gz") for m in names}


@pytest.fixture(scope="module")
def full(case, tmp_path_factory):
    out = tmp_path_factory.mktemp("effects") / "all"
    return out, segment(SegmentRequest(model=str(builtin_model()), inputs=_inputs(case), out=str(out)))


@pytest.mark.parametrize("withheld", MODALITIES)
def test_reported_volume_change_equals_a_run_without_the_modality(case, full, tmp_path, withheld):
    _, report = full
    without = segment(SegmentRequest(model=str(builtin_model()), out=str(tmp_path / "without"), maps="none",
                                     inputs=_inputs(case, [m for m in MODALITIES if m != withheld])))
    assert without["absent"] == [withheld]
    for t, entry in report["targets"].items():
        measured = without["targets"][t]["volume_ml"] - entry["volume_ml"]
        reported = entry["effects"][withheld]["volume_change_ml"]
        assert reported == pytest.approx(measured, abs=max(0.01 * entry["volume_ml"], 0.01)), (t, withheld)


def test_the_largest_share_goes_to_the_modality_whose_absence_costs_most(full):
    _, report = full
    decided = []
    for t, entry in report["targets"].items():
        shares = entry["contributions"]
        most = max(MODALITIES, key=lambda m: 1 - entry["effects"][m]["dice_without"])
        if entry["effects"][most]["dice_without"] < 0.9:  # a clear loss: the ranking is decided
            assert max(shares, key=shares.get) == most, (t, shares)
            decided.append(t)
    assert len(decided) >= 2, "the case should show at least the two primaries' losses"


def test_withheld_outputs_equal_the_network_run_without_the_modality():
    card = card_from_dict({**tiny(preset_dict("brats")), "inference": {"roi_size": [16, 16, 16],
                                                                         "effect_floor": 1e-6}})
    torch.manual_seed(0)
    net = CIMLNet(card).eval()
    windows = torch.randn(2, 4, 16, 16, 16)
    with torch.inference_mode():
        out = WithheldPredictor(net, None, torch.device("cpu"))(windows)
        assert torch.allclose(out["logits"], net(windows), atol=1e-5)
        for j in range(4):
            zeroed = windows.clone()
            zeroed[:, j] = 0
            present = torch.ones(2, 4)
            present[:, j] = 0
            expected = net.forward_features(zeroed, present).logits
            got = out["withheld"][:, j * 3:(j + 1) * 3]
            assert torch.allclose(got, expected, atol=1e-4), card.modality_names[j]


def test_effect_maps_are_signed_and_zero_outside_the_body(case, full):
    out, report = full
    reference, _ = read_array(case / f"{case.name}_t1ce.nii.gz")
    outside = ~body_mask(reference)
    assert outside.any()
    signs = set()
    for m in MODALITIES:
        values, _ = read_array(out / f"effect_{m}.nii.gz")
        assert np.abs(values[outside]).max() == 0.0, m
        signs |= {np.sign(values.min()), np.sign(values.max())}
    assert -1 in signs and 1 in signs, "effects are signed"


def test_strongest_effect_keeps_the_sign_of_the_largest_change():
    per_target = np.array([[0.2, -0.1], [-0.5, 0.05]])
    assert strongest_effect(per_target).tolist() == [-0.5, -0.1]


def test_a_model_without_a_modality_is_segmented_with_a_warning(case, tmp_path):
    report = segment(SegmentRequest(model=str(builtin_model()), out=str(tmp_path / "o"),
                                    inputs=_inputs(case, ("t1", "t2", "flair"))))
    assert report["absent"] == ["t1ce"]
    assert report["reference"] == "t1", "without the card's reference, the first given modality's grid"
    assert any(w.startswith("ET needs t1ce") for w in report["warnings"])  # the card's targets[].needs
    assert not any("not trained" in w for w in report["warnings"])  # it was trained with t1ce missing
    plain = preset("brats")  # no missing rates: the run says its accuracy without t1ce is untested
    assert any("not trained with t1ce missing" in w for w in absent_warnings(plain, ["t1ce"]))
    for entry in report["targets"].values():
        assert entry["effects"]["t1ce"] == "absent" and "t1ce" not in entry["contributions"]
    assert not (tmp_path / "o" / "effect_t1ce.nii.gz").exists()
    assert sitk.ReadImage(str(tmp_path / "o" / "segmentation.nii.gz")).GetSize() == \
        sitk.ReadImage(_inputs(case)["t1"]).GetSize()


def test_a_model_trained_for_missing_modalities_has_no_warning(tmp_path):
    shapes = tmp_path / "shapes"
    write_case(generate_case("shapes", 0, seed=3, size="small"), shapes)
    write_case(generate_case("shapes", 1, seed=3, size="small"), shapes)
    card = tiny(preset_dict("shapes"))
    card["training"] = {**card.get("training", {}), "patch_size": [16, 16, 16], "max_steps": 2, "batch_size": 1,
                        "validation_interval": 2}
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(card))
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "ciml", "train", "--data", str(shapes), "--card", str(card_path),
                              "--out", str(run), "--missing-rates", "cue=0.5,echo=0.5", "--val-fraction", "0.5",
                              "--progress", "none"], capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    case = shapes / case_ids("shapes", 2)[0]
    inputs = {m: str(case / f"{case.name}_{m}.nii.gz") for m in ("shapes", "echo")}
    done = subprocess.run([sys.executable, "-m", "ciml", "segment", "--model", str(run / "bundle"), "--out",
                           str(tmp_path / "o"), "--progress", "none", *[a for m, p in inputs.items()
                                                                        for a in ("--input", f"{m}={p}")]],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["absent"] == ["cue"]
    assert not any("not trained" in w for w in report["warnings"])
