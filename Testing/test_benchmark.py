"""`ciml benchmark`: result structure, ratios from the times, and a baseline computing the same maps."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny

from ciml.cli.main import main
from ciml.config import card_from_dict, preset_dict
from ciml.data.synthetic import generate_case
from ciml.inference.sliding_window import predict_with_cams
from ciml.nn import CIMLNet
from ciml.research.benchmark import (
    Setup,
    benchmark_card,
    benchmark_image,
    config_network,
    predict_segresnet,
    run_benchmark,
)
from ciml.research.captum_loop import predict_with_captum
from ciml.research.profile import format_profile, profile_network
from ciml.research.targets import CONFIGS, PIPELINES, WINDOW_PLANS
from ciml.research.yardstick import run_pipelines
from ciml.resources import builtin_model

TINY = {"network": {"features": [4, 8, 16]}, "inference": {"roi_size": [16, 16, 16], "window_voxels": 16**3}}


@pytest.fixture(scope="module")
def small_setup():
    card = benchmark_card("brats", "small", TINY)
    image = benchmark_image(card, "small")
    return Setup(card, image[:, 40:64, 40:56, 24:40].contiguous(), torch.device("cpu"), segresnet_roi=(24, 16, 16))


def test_small_case_is_on_the_cards_grid():
    card = benchmark_card("brats", "small", TINY)
    assert card.spacing == (2.5, 2.5, 2.5) and card.network.features == (4, 8, 16)
    image = benchmark_image(card, "small")
    case = generate_case("brats", 0, size="small")
    # the case's own voxel size varies (its zoom), so the image is resampled to the card's 2.5 mm
    expected = tuple(round(n * s / 2.5) for n, s in zip(case.label.shape, case.spacing))
    assert case.spacing != (2.5, 2.5, 2.5) and image.shape == (4, *expected)
    assert image.dtype == torch.float32 and image.abs().max() > 0


def test_result_structure_and_ratios(small_setup):
    result = run_benchmark(small_setup, repeats=1, isolate=False, baseline_windows=1)
    assert set(result["configs"]) == set(CONFIGS)
    for name, r in result["configs"].items():
        assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"], name
        assert r["parameters"] > 0 and r["windows"] == (1 if name == "segresnet" else 2), name
    assert result["configs"]["captum_loop"]["extrapolated"]
    assert not result["configs"]["ciml"]["extrapolated"]
    # matched parameter counts, within a few percent
    a, c = result["configs"]["ciml"]["parameters"], result["configs"]["early_fusion"]["parameters"]
    assert abs(a - c) / a < 0.05
    times = {k: v["median_s"] for k, v in result["configs"].items()}
    ratios = result["ratios"]
    assert ratios["ciml/early_fusion"]["value"] == pytest.approx(times["ciml"] / times["early_fusion"])
    assert ratios["ciml_cams/ciml"]["value"] == pytest.approx(times["ciml_cams"] / times["ciml"])
    assert ratios["captum_loop/ciml_cams"]["value"] == pytest.approx(times["captum_loop"] / times["ciml_cams"])
    assert ratios["ciml/early_fusion"]["met"] == (ratios["ciml/early_fusion"]["value"] <= 1.3)
    assert ratios["captum_loop/ciml_cams"]["met"] is None
    assert result["image_shape"] == [4, 24, 16, 16] and result["isolated"] is False


def test_captum_loop_gives_the_same_blended_maps():
    torch.manual_seed(0)
    card = card_from_dict(tiny(preset_dict("brats")))
    net = CIMLNet(card).eval()
    with torch.no_grad():  # predict a part of every window, so every score has gradients
        for decoder in net.decoders.values():
            decoder.head.conv.conv.bias.fill_(2.0)
    image = torch.randn(4, 24, 20, 16)  # several overlapping windows, blended
    logits, cams = predict_with_cams(net, image, card, torch.device("cpu"))
    theirs_logits, theirs = predict_with_captum(net, image, card, torch.device("cpu"))
    assert theirs.shape == cams.shape == (3, 4, 24, 20, 16) and cams.amax() > 0
    torch.testing.assert_close(theirs_logits, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(theirs, cams, rtol=1e-3, atol=1e-5 * float(cams.amax()))


def test_cli_refuses_to_overwrite_out(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    assert main(["benchmark", "--size", "small", "--out", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_cli_rejects_an_unknown_configuration(capsys):
    assert main(["benchmark", "--only", "nope"]) != 0
    assert "unknown configuration" in capsys.readouterr().err


def test_segresnet_configuration_gives_logits_of_the_case(small_setup):
    network = config_network("segresnet", small_setup.card)
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(4.7e6, rel=0.02)  # the bundle's 4.7 M
    logits = predict_segresnet(network, small_setup.image, small_setup.segresnet_roi, small_setup.device)
    assert logits.shape == (3, 24, 16, 16) and torch.isfinite(logits).all()


def test_pipelines_run_as_processes_with_ratios(tmp_path):
    pytest.importorskip("nibabel")  # MONAI's NIfTI reader and writer in the SegResNet pipeline
    card = benchmark_card("brats", "small", TINY)  # the small case on its own 2.5 mm grid
    result = run_pipelines(tmp_path / "work", card, builtin_model(), size="small", repeats=1, roi_size=(96, 96, 64))
    assert list(result["processes"]) == list(PIPELINES)
    for name, r in result["processes"].items():
        assert r["median_s"] > 0 and len(r["times_s"]) == 1 and r["rss_peak_bytes"] > 1e7, name
    assert sorted((tmp_path / "work" / "run0" / "segresnet").glob("*_seg.nii.gz"))
    assert (tmp_path / "work" / "run0" / "ciml_brats").is_dir()
    times = {k: v["median_s"] for k, v in result["processes"].items()}
    ratios = result["ratios"]
    assert ratios["ciml_brats/segresnet"]["value"] == pytest.approx(times["ciml_brats"] / times["segresnet"])
    assert ratios["ciml_builtin/segresnet"]["target"] == 0.5
    assert ratios["ciml_brats/segresnet"]["met"] == (ratios["ciml_brats/segresnet"]["value"] <= 1.5)


def test_profile_covers_every_block_of_a_tiny_card():
    card = card_from_dict(tiny(preset_dict("brats")))
    result = profile_network(card, repeats=1)
    names = [r["name"] for r in result["rows"]]
    levels = len(card.network.features)
    assert [n for n in names if n.startswith("encoder")] == [f"encoder level {i}" for i in range(levels)]
    net = CIMLNet(card)
    assert {n for n in names if n.startswith("gates")} == {f"gates level {lv}" for lv in net.gate_levels}
    for s in card.subtasks:
        ups = [n for n in names if n.startswith(f"decoder {s.name} up-block")]
        assert len(ups) == levels - 1 and f"decoder {s.name} head" in names
    assert result["rows"][0]["count"] == 4 and sum(r["share"] for r in result["rows"]) == pytest.approx(1.0)
    table = format_profile(result)
    assert all(n in table for n in names)
    assert set(result["alternatives"]) == {"default", "channels_last_3d"}
    assert "channels_last_3d" in table


def test_profile_command_runs_one_window_of_the_plan(capsys):
    assert main(["benchmark", "--profile", "--size", "small", "--repeats", "1"]) == 0
    table = capsys.readouterr().out
    assert "cover the benchmark case's body box" in table and "before: " in table


def test_plans_score_every_window_plan_against_the_labels_and_the_old_tiles(tmp_path, capsys):
    out = tmp_path / "plans.json"
    assert main(["benchmark", "--plans", "--cases", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert list(result["plans"]) == list(WINDOW_PLANS) and result["seed"] == 99
    before = result["plans"]["roi tiles, whole image (before)"]
    assert all(a == [1.0] for a in before["agreement"].values())  # the reference agrees with itself
    for name, row in result["plans"].items():
        assert name in table and all(0.0 <= d[0] <= 1.0 for d in row["dice"].values())
    assert result["plans"]["body box, one window"]["windows"] == [1]


def test_plans_and_pipelines_are_separate_runs(capsys):
    assert main(["benchmark", "--plans", "--pipelines"]) != 0
    assert "separate runs" in capsys.readouterr().err


def test_information_lists_each_hidden_structure_with_its_right_share_and_changes(tmp_path, capsys):
    from ciml.data.synthetic.brats_tumour import REGION
    from ciml.research.information import TELLS, structure_truth

    out = tmp_path / "information.json"
    assert main(["benchmark", "--information", "--cases", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    regions = generate_case("brats", 0, seed=result["seed"]).extras["regions"]
    assert set(result["structures"]) == {s for s in TELLS if (regions == REGION[s]).any()}
    for name, entry in result["structures"].items():
        assert name in table and entry["cases"] == 1 and entry["truth"] == structure_truth(name)
        assert set(entry["changed_without"]) == {"t1", "t1ce", "t2", "flair"}
        for values in (entry["right"], *entry["right_without"].values(), *entry["changed_without"].values()):
            assert 0.0 <= values[0] <= 1.0
        # a voxel can only change from right to wrong or back: the right shares differ by at most the change
        for m, changed in entry["changed_without"].items():
            assert abs(entry["right"][0] - entry["right_without"][m][0]) <= changed[0] + 1e-9
    # the structures' answers: a cyst is not tumour core, haemorrhage is not enhancing, faint edema is tumour
    assert not structure_truth("cyst") and not structure_truth("haemorrhage") and structure_truth("faint_edema")
    assert not structure_truth("flair_artefact") and structure_truth("non_enhancing")


def test_information_needs_a_brats_model(tmp_path, capsys):
    from ciml.bundle.weights import save_bundle

    card = card_from_dict(tiny(preset_dict("shapes")))
    save_bundle(tmp_path / "shapes-model", CIMLNet(card), card)
    assert main(["benchmark", "--information", "--model", str(tmp_path / "shapes-model")]) == 2
    assert "needs a brats model" in capsys.readouterr().err
