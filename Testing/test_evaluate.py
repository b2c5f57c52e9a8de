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
from ciml.evaluation.lesions import LESION_WORST_HD95, lesion_wise
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
    report = json.loads(out.read_text())["results"]
    assert len(report["cases"]) == 4 and "mean" in table and "Dice target" in table
    dice = [c["dice"]["target"] for c in report["cases"]]
    assert report["mean"]["dice"]["target"] == pytest.approx(np.mean(dice))
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--out", str(out), "--progress", "none"]) == 2, "never overwrites"


def test_a_passion_model_segments_with_a_modality_absent(passion_model, tmp_path):
    out = tmp_path / "missing.json"
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--missing", "echo", "--out", str(out), "--progress", "none"]) == 0
    report = json.loads(out.read_text())["results"]
    assert report["missing"] == ["echo"]
    assert all(0.0 <= c["dice"]["target"] <= 1.0 for c in report["cases"])


def test_without_the_reference_the_scores_stay_on_the_labels_grid(passion_model, tmp_path):
    """The reference gives the output grid; without it the first given modality's grid serves,
    as in `ciml segment`, and the label is read on that grid."""
    out = tmp_path / "no-reference.json"
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--missing", "shapes", "--out", str(out), "--progress", "none"]) == 0
    report = json.loads(out.read_text())["results"]
    assert report["missing"] == ["shapes"] and len(report["cases"]) == 4
    made = json.loads((passion_model / "run" / "bundle" / "metadata.json").read_text())["provenance"]
    assert report["training"] == {k: made[k] for k in ("data", "steps", "init", "seed")}  # travels with the scores


@pytest.mark.parametrize("missing,message", [("flair", "not a modality"), ("shapes,cue,echo", "leaves nothing")])
def test_evaluate_refuses_bad_missing_names(passion_model, capsys, missing, message):
    assert main(["evaluate", "--model", str(passion_model / "run" / "bundle"), "--data", str(passion_model / "data"),
                 "--missing", missing, "--progress", "none"]) == 2
    assert message in capsys.readouterr().err


def _box(shape, *slices) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[slices] = True
    return mask


LESION_SHAPE = (60, 60, 40)


def test_lesion_wise_dice_is_the_mean_over_lesions_a_missed_one_scoring_0():
    found = _box(LESION_SHAPE, slice(5, 15), slice(5, 15), slice(5, 15))       # 1000 voxels
    missed = _box(LESION_SHAPE, slice(40, 50), slice(40, 50), slice(20, 30))
    prediction = _box(LESION_SHAPE, slice(7, 15), slice(5, 15), slice(5, 15))  # 800 of them
    scores = lesion_wise(prediction, found | missed)
    found_dice = 2 * 800 / (800 + 1000)
    assert scores["dice"] == pytest.approx((found_dice + 0) / 2)
    assert scores["hd95"] == pytest.approx((region_metrics(torch.from_numpy(prediction[None]),
                                                           torch.from_numpy(found[None]), ["t"])["hd95"]["t"]
                                            + LESION_WORST_HD95) / 2)
    assert (scores["lesions"], scores["found"], scores["missed"], scores["false_positives"]) == (2, 1, 1, 0)
    plain = region_metrics(torch.from_numpy(prediction[None]), torch.from_numpy((found | missed)[None]), ["t"])
    assert plain["dice"]["t"] == pytest.approx(2 * 800 / (800 + 2000)), "the plain Dice pools the voxels"


def test_a_false_positive_counts_as_a_lesion_and_small_lesions_are_not_scored():
    lesion = _box(LESION_SHAPE, slice(5, 15), slice(5, 15), slice(5, 15))
    small = _box(LESION_SHAPE, slice(40, 43), slice(40, 43), slice(30, 33))    # 27 voxels: <= 50 mm^3
    stray = _box(LESION_SHAPE, slice(30, 34), slice(5, 9), slice(30, 34))      # overlaps no lesion
    scores = lesion_wise(lesion | stray | small, lesion | small)
    assert (scores["lesions"], scores["false_positives"]) == (1, 1), "the small lesion's match is no FP"
    assert scores["dice"] == pytest.approx(0.5) and scores["hd95"] == pytest.approx(LESION_WORST_HD95 / 2)
    # The same small lesion on a 2 mm grid is 216 mm^3: scored, and found.
    assert lesion_wise(lesion | stray | small, lesion | small, (2.0, 2.0, 2.0))["lesions"] == 2


def test_nearby_label_components_are_one_lesion_and_a_prediction_near_a_lesion_matches_it():
    left = _box(LESION_SHAPE, slice(5, 15), slice(5, 15), slice(5, 15))
    right = _box(LESION_SHAPE, slice(19, 29), slice(5, 15), slice(5, 15))      # 4 voxels apart: merged
    beside = _box(LESION_SHAPE, slice(5, 15), slice(17, 25), slice(5, 15))     # 2 voxels off the lesion
    merged = lesion_wise(left | right, left | right)
    assert (merged["lesions"], merged["dice"], merged["hd95"]) == (1, 1.0, 0.0)
    near = lesion_wise(beside, left)
    assert (near["found"], near["false_positives"], near["dice"]) == (1, 0, 0.0)
    assert lesion_wise(np.zeros(LESION_SHAPE, bool), np.zeros(LESION_SHAPE, bool)) == {
        "dice": 1.0, "hd95": 0.0, "lesions": 0, "found": 0, "missed": 0, "false_positives": 0}
