"""`ciml benchmark <kind>`: the sub-commands, their result files, the ratios' verdicts, and a
baseline computing the same maps."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import tiny

from ciml.bundle.weights import save_bundle
from ciml.cli.main import main
from ciml.config import card_from_dict, preset_dict
from ciml.data.synthetic import generate_case
from ciml.errors import CIMLError
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
from ciml.research.record import envelope, script_envelope, source_commit, write_record
from ciml.research.targets import CONFIGS, PIPELINE_RATIOS, PIPELINES, RATIOS, UNSEEN_SEED, WINDOW_PLANS, ratio_verdicts
from ciml.resources import builtin_model
from ciml.research.yardstick import pipeline_environments, run_pipelines
from ciml.startup import HUGE_PAGES
from ciml.resources import builtin_model

TINY = {"network": {"features": [4, 8, 16]}, "inference": {"roi_size": [16, 16, 16], "window_voxels": 16**3}}
KINDS = ("speed", "pipelines", "profile", "plans", "information", "relations")


@pytest.fixture(scope="module")
def small_setup():
    card = benchmark_card("brats", "small", TINY)
    image = benchmark_image(card, "small")
    return Setup(card, image[:, 40:64, 40:56, 24:40].contiguous(), torch.device("cpu"), segresnet_roi=(24, 16, 16))


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_small_case_is_on_the_cards_grid():
    card = benchmark_card("brats", "small", TINY)
    assert card.spacing == (2.5, 2.5, 2.5) and card.network.features == (4, 8, 16)
    image = benchmark_image(card, "small")
    case = generate_case("brats", 0, size="small")
    # the case's own voxel size varies (its zoom), so the image is resampled to the card's 2.5 mm
    expected = tuple(round(n * s / 2.5) for n, s in zip(case.label.shape, case.spacing))
    assert case.spacing != (2.5, 2.5, 2.5) and image.shape == (4, *expected)
    assert image.dtype == torch.float32 and image.abs().max() > 0


def test_every_configuration_is_timed_on_the_same_windows(small_setup):
    result = run_benchmark(small_setup, repeats=1, isolate=False, baseline_windows=1)
    assert set(result["configs"]) == set(CONFIGS) and set(result["ratios"]) == set(RATIOS)
    for name, r in result["configs"].items():
        assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"], name
        assert r["parameters"] > 0 and r["windows"] == (1 if name == "segresnet" else 2), name
    assert result["configs"]["captum_loop"]["extrapolated"]
    assert not result["configs"]["ciml"]["extrapolated"]
    # matched parameter counts, within a few percent
    a, c = result["configs"]["ciml"]["parameters"], result["configs"]["early_fusion"]["parameters"]
    assert abs(a - c) / a < 0.05
    assert result["image_shape"] == [4, 24, 16, 16] and result["isolated"] is False


@pytest.mark.parametrize("table", [RATIOS, PIPELINE_RATIOS], ids=["speed", "pipelines"])
def test_a_ratios_verdict_flips_when_its_bound_is_crossed(table):
    for key, (num, den, bound) in table.items():
        if bound is None:
            assert ratio_verdicts({num: 5.0, den: 1.0}, table)[key]["met"] is None  # report only
            continue
        under = ratio_verdicts({num: 0.99 * bound, den: 1.0}, table)[key]
        over = ratio_verdicts({num: 1.01 * bound, den: 1.0}, table)[key]
        assert (under["met"], over["met"]) == (True, False) and under["target"] == bound, key
        assert key not in ratio_verdicts({num: 1.0}, table)  # a ratio of an untimed configuration is left out


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


def test_a_speed_run_of_a_tiny_bundle_writes_its_result_file(tmp_path, capsys, monkeypatch):
    card_dict = tiny(preset_dict("brats"))
    card_dict["spacing"] = [2.5, 2.5, 2.5]  # the small case's grid: few windows
    card_dict["inference"]["window_voxels"] = 16**3
    card = card_from_dict(card_dict)
    save_bundle(tmp_path / "tiny", CIMLNet(card), card)
    monkeypatch.chdir(tmp_path)
    argv = ["benchmark", "speed", "--model", str(tmp_path / "tiny"), "--size", "small", "--only", "ciml,ciml_cams",
            "--repeats", "1", "--windows", "1", "--in-process", "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    written = list((tmp_path / "ciml-results").glob("benchmark.speed-*.json"))
    assert len(written) == 1 and f"result file: {Path('ciml-results') / written[0].name}" in captured.err
    record = json.loads(written[0].read_text())
    assert record["kind"] == "benchmark.speed" and record["command"] == "ciml " + " ".join(argv)
    assert {"cpu", "cores", "threads", "torch", "device"} <= set(record["machine"]) and record["machine"]["device"] == "cpu"
    results = record["results"]
    assert list(results["configs"]) == ["ciml", "ciml_cams"] and set(results["ratios"]) == {"ciml_cams/ciml"}
    assert results["model"] == str(tmp_path / "tiny") and results["configs"]["ciml"]["extrapolated"]
    assert "(b) CIML + all heat maps" in captured.out and record["date"][:10] in captured.out


def test_a_result_file_is_never_overwritten(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    assert main(["benchmark", "speed", "--size", "small", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "{}"
    # nor one that appears while a run measures: the file is created exclusively
    record = {"kind": "benchmark.profile", "results": {}}
    with pytest.raises(CIMLError, match="already exists"):
        write_record(record, out)
    assert out.read_text() == "{}"
    # without --out, runs finishing in the same second get files of their own
    monkeypatch.chdir(tmp_path)
    first, second = (write_record(record, None) for _ in range(2))
    assert first != second and json.loads(first.read_text()) == json.loads(second.read_text()) == record


def test_the_envelope_carries_the_commit_of_the_checkout():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    package = Path(__file__).resolve().parents[1] / "CIMLSegmentation" / "ciml"
    try:
        head = _git("rev-parse", "HEAD", cwd=package)
    except subprocess.CalledProcessError:
        pytest.skip("not a git checkout")
    record = envelope("benchmark.plans", {"plans": {}}, ["benchmark", "plans", "--cases", "1"])
    assert record["commit"] == head and isinstance(record["dirty"], bool)
    assert record["command"] == "ciml benchmark plans --cases 1" and record["results"] == {"plans": {}}


def test_a_script_run_records_the_script_as_its_command():
    record = script_envelope("size-gap", {"mean": {}}, "size_gap.py", ["--model", "a bundle", "--data", "DIR"])
    assert record["command"] == "python scripts/size_gap.py --model 'a bundle' --data DIR"
    assert record["kind"] == "size-gap" and record["results"] == {"mean": {}}


def test_the_commit_is_unknown_outside_a_checkout_and_dirty_after_a_change(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    assert source_commit(package) == (None, "unknown")
    repo = package.parent
    (repo / "notes.md").write_text("docs\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first", cwd=repo)
    head = _git("rev-parse", "HEAD", cwd=repo)
    (package / "result.json").write_text("{}")  # an untracked file is not a change of the code
    (repo / "notes.md").write_text("edited docs\n")  # nor a tracked file outside the package
    assert source_commit(package) == (head, False)
    (package / "__init__.py").write_text("x = 2\n")
    assert source_commit(package) == (head, True)
    installed = tmp_path / "repo" / "site" / "pkg"  # a copy inside the checkout, not tracked by it
    shutil.copytree(package, installed)
    assert source_commit(installed) == (None, "unknown")


@pytest.mark.parametrize("argv, flag", [
    (["speed", "--cases", "1"], "--cases"),        # plans' and information's
    (["plans", "--repeats", "2"], "--repeats"),    # speed's, pipelines' and profile's
    (["profile", "--only", "ciml"], "--only"),     # speed's
    (["pipelines", "--compile"], "--compile"),     # profile's
])
def test_a_sub_command_refuses_another_ones_flag_in_one_line(capsys, argv, flag):
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"ciml benchmark {argv[0]}: error: unrecognized arguments: {flag}")


def test_benchmark_without_a_sub_command_lists_them(capsys):
    assert main(["benchmark"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == list(KINDS)
    assert lines[-1].startswith("ciml benchmark: error: which benchmark?")


def test_speed_rejects_an_unknown_configuration(capsys):
    assert main(["benchmark", "speed", "--only", "nope"]) == 2
    assert "unknown configuration" in capsys.readouterr().err


def test_segresnet_configuration_gives_logits_of_the_case(small_setup):
    network = config_network("segresnet", small_setup.card)
    assert sum(p.numel() for p in network.parameters()) == pytest.approx(4.7e6, rel=0.02)  # the bundle's 4.7 M
    logits = predict_segresnet(network, small_setup.image, small_setup.segresnet_roi, small_setup.device)
    assert logits.shape == (3, 24, 16, 16) and torch.isfinite(logits).all()


def test_pipelines_run_as_processes(tmp_path):
    pytest.importorskip("nibabel")  # MONAI's NIfTI reader and writer in the SegResNet pipeline
    card = benchmark_card("brats", "small", TINY)  # the small case on its own 2.5 mm grid
    result = run_pipelines(tmp_path / "work", card, builtin_model(), size="small", repeats=1, roi_size=(96, 96, 64))
    assert list(result["processes"]) == list(PIPELINES) and set(result["ratios"]) == set(PIPELINE_RATIOS)
    for name, r in result["processes"].items():
        assert r["median_s"] > 0 and len(r["times_s"]) == 1 and r["rss_peak_bytes"] > 1e7, name
    for name in ("segresnet", "segresnet_huge_pages"):
        assert sorted((tmp_path / "work" / "run0" / name).glob("*_seg.nii.gz")), name
    # the ciml processes' own report splits their time into stages
    assert result["processes"]["ciml_brats"]["stages_median_s"] and not result["processes"]["segresnet"]["stages_median_s"]


def test_monai_pipeline_runs_without_and_with_huge_pages_whatever_the_caller_set():
    envs = pipeline_environments({"PATH": "/bin", HUGE_PAGES: "1"})
    assert envs["ciml_brats"][HUGE_PAGES] == "1" and envs["segresnet_huge_pages"][HUGE_PAGES] == "1"
    assert HUGE_PAGES not in envs["segresnet"] and envs["segresnet"]["PATH"] == "/bin"
    assert set(envs) == set(PIPELINES)


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


def test_profile_command_runs_one_window_of_the_plan(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["benchmark", "profile", "--size", "small", "--repeats", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["kind"] == "benchmark.profile" and "cover the benchmark case's body box" in table
    results = record["results"]
    assert results["windows"] >= 1 and len(results["box"]) == 3 and results["rows"][0]["name"] == "encoder level 0"


def test_plans_score_every_window_plan_against_the_labels_and_the_cards_plan(tmp_path, capsys):
    out = tmp_path / "plans.json"
    assert main(["benchmark", "plans", "--cases", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    record = json.loads(out.read_text())
    result = record["results"]
    assert record["kind"] == "benchmark.plans" and result["seed"] == 99
    assert list(result["plans"]) == list(WINDOW_PLANS) and not any("before" in name for name in result["plans"])
    for name, row in result["plans"].items():
        assert name in table and all(0.0 <= d[0] <= 1.0 for d in row["dice"].values())
        assert all(0.0 <= a[0] <= 1.0 for a in row["agreement"].values())
    assert result["plans"]["body box, one window"]["windows"] == [1]


def test_information_lists_each_hidden_structure_with_its_right_share_and_changes(tmp_path, capsys):
    from ciml.data.synthetic.brats_tumour import REGION
    from ciml.research.information import TELLS, structure_truth

    out = tmp_path / "information.json"
    assert main(["benchmark", "information", "--cases", "1", "--device", "cpu", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["kind"] == "benchmark.information"
    result = record["results"]
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
    card = card_from_dict(tiny(preset_dict("shapes")))
    save_bundle(tmp_path / "shapes-model", CIMLNet(card), card)
    assert main(["benchmark", "information", "--model", str(tmp_path / "shapes-model")]) == 2
    assert "needs a brats model" in capsys.readouterr().err


def test_relations_set_the_reported_shares_beside_real_runs_without_each_modality():
    from ciml.research.relations import measure_relations
    result = measure_relations(str(builtin_model()), cases=1, seed=UNSEEN_SEED)
    rows = {(r["target"], r["modality"]): r for r in result["rows"]}
    assert len(rows) == 3 * 4
    for target, primary in (("WT", "flair"), ("TC", "t1ce"), ("ET", "t1ce")):
        # withholding the primary loses most, and the table gives it the largest share
        lost = {m: rows[target, m]["dice"] - rows[target, m]["dice_without"] for m in ("t1", "t1ce", "t2", "flair")}
        assert max(lost, key=lost.get) == primary, (target, lost)
        shares = {m: rows[target, m]["share"] for m in lost}
        assert max(shares, key=shares.get) == primary, (target, shares)
    assert result["spearman"]["WT"] > 0.5
