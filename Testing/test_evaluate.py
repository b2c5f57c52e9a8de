"""Evaluation: MONAI-based scores against a direct computation, empty masks, `ciml evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from test_train import tiny_shapes_card

from ciml.cli.main import main
from ciml.data.synthetic import write_cases
from ciml.evaluation.metrics import WORST_HD95, region_metrics


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Distances (mm) from a's surface voxels to b's surface: an independent HD implementation."""
    def surface(mask: np.ndarray) -> np.ndarray:
        return mask & ~ndimage.binary_erosion(mask)

    to_b = ndimage.distance_transform_edt(~surface(b), sampling=spacing)
    return to_b[surface(a)]


def _direct(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float]:
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    hd95 = max(np.percentile(_surface_distances(a, b, spacing), 95), np.percentile(_surface_distances(b, a, spacing), 95))
    return float(dice), float(hd95)


def test_scores_equal_a_direct_computation():
    shape, spacing = (30, 28, 26), (1.0, 1.5, 2.0)
    pred, true = np.zeros(shape, bool), np.zeros(shape, bool)
    true[5:15, 6:18, 4:12] = True
    pred[7:18, 6:16, 5:14] = True
    ball = np.linalg.norm(np.indices(shape) - np.array([20, 20, 18])[:, None, None, None], axis=0) < 5
    pred2, true2 = ball, np.roll(ball, 2, axis=0)
    scores = region_metrics(torch.from_numpy(np.stack([pred, pred2])), torch.from_numpy(np.stack([true, true2])),
                            ["cube", "ball"], spacing)
    for name, (a, b) in {"cube": (pred, true), "ball": (pred2, true2)}.items():
        dice, hd95 = _direct(a, b, spacing)
        assert scores["dice"][name] == pytest.approx(dice, abs=1e-6)
        assert scores["hd95"][name] == pytest.approx(hd95, abs=1e-4)


def test_empty_masks_are_scored_as_brats_does():
    empty, some = torch.zeros(1, 8, 8, 8), torch.zeros(1, 8, 8, 8)
    some[0, 2:5, 2:5, 2:5] = 1
    assert region_metrics(empty, empty, ["t"]) == {"dice": {"t": 1.0}, "hd95": {"t": 0.0}}
    assert region_metrics(some, empty, ["t"]) == {"dice": {"t": 0.0}, "hd95": {"t": WORST_HD95}}
    assert region_metrics(empty, some, ["t"]) == {"dice": {"t": 0.0}, "hd95": {"t": WORST_HD95}}
    assert WORST_HD95 == pytest.approx(373.13, abs=0.01)


@pytest.fixture(scope="module")
def passion_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("passion")
    write_cases("shapes", 4, root / "data", seed=5)
    assert main(["train", "--progress", "none", "--data", str(root / "data"), "--out", str(root / "run"),
                 "--card", str(tiny_shapes_card(root)), "--max-steps", "6", "--missing-rates", "cue=0.5,echo=0.5"]) == 0
    return root


def test_evaluate_writes_per_case_and_mean_scores(passion_model, capsys):
    out = passion_model / "scores.json"
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--out", str(out), "--progress", "none"]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert len(report["cases"]) == 4 and "mean" in table and "Dice target" in table
    dice = [c["dice"]["target"] for c in report["cases"]]
    assert report["mean"]["dice"]["target"] == pytest.approx(np.mean(dice))
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--out", str(out), "--progress", "none"]) == 2, "never overwrites"


def test_a_passion_model_segments_with_a_modality_absent(passion_model, tmp_path):
    out = tmp_path / "missing.json"
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--missing", "echo", "--out", str(out), "--progress", "none"]) == 0
    report = json.loads(out.read_text())
    assert report["missing"] == ["echo"]
    assert all(0.0 <= c["dice"]["target"] <= 1.0 for c in report["cases"])


@pytest.mark.parametrize("missing,message", [("flair", "not a modality"), ("shapes", "reference modality")])
def test_evaluate_refuses_bad_missing_names(passion_model, capsys, missing, message):
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--missing", missing, "--progress", "none"]) == 2
    assert message in capsys.readouterr().err
