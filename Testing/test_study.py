"""`ciml study`: the plan's cards, the statistics of the report, and a tiny study end to end."""

from __future__ import annotations

import json
import statistics

import pytest

from ciml.cli.main import main
from ciml.config import card_from_dict
from ciml.nn import CIMLNet
from ciml.research.study.plan import PLANS, plan_for
from ciml.research.study.report import beyond_spread, main_table, summarise, write_report
from ciml.research.study import training_log
from ciml.research.study.runner import TRAINED, jobs, run_folder, run_study, train_step


@pytest.mark.parametrize("task", sorted(PLANS))
def test_every_method_trains_a_valid_card_with_the_shared_budget(task):
    plan = PLANS[task]
    for method in plan.all_methods:
        if not plan.applicable(method):
            continue
        card = card_from_dict(plan.card(method))
        assert card.training.max_steps == plan.budget["training"]["max_steps"]
        assert list(card.training.patch_size) == plan.budget["training"]["patch_size"]
        assert list(card.network.features) == plan.budget["network"]["features"]


def test_the_ablations_change_what_they_name():
    plan = PLANS["brats"]
    primary_only = CIMLNet(card_from_dict(plan.card("primary-only")))
    assert len(primary_only.gates) == 0 and set(primary_only.encoders) == {"flair", "t1ce"}
    one = card_from_dict(plan.card("no-decomposition"))
    assert len(one.subtasks) == 1 and set(one.subtasks[0].targets) == {"WT", "TC", "ET"}
    assert set(one.subtasks[0].auxiliaries) == {"t1", "t2", "flair"}
    assert not card_from_dict(plan.card("no-bottleneck")).network.gate_bottleneck
    assert not card_from_dict(plan.card("no-attention")).network.gate_attention
    assert card_from_dict(plan.card("ciml")).network.gate_bottleneck
    assert card_from_dict(plan.card("ciml")).network.gate_message == "decoded"
    assert card_from_dict(plan.card("gate-latent")).network.gate_message == "latent"
    # the default gates every encoder level; the ablation only the two deepest (16^3 and 8^3 of 64^3)
    assert len(CIMLNet(card_from_dict(plan.card("ciml"))).gate_levels) == len(plan.budget["network"]["features"])
    assert CIMLNet(card_from_dict(plan.card("gates-deep"))).gate_levels == (2, 3)
    shapes = PLANS["shapes"]
    assert card_from_dict(shapes.card("gate-free-bits")).training.free_bits == 0.02
    both = card_from_dict(shapes.card("gate-latent-free-bits"))
    assert both.network.gate_message == "latent" and both.training.free_bits == 0.02
    warm = card_from_dict(shapes.card("gate-warmup")).training
    assert warm.beta_warmup_steps == warm.max_steps // 2 > 0
    # shapes has one sub-task: there is nothing to decompose, so the ablation is not run
    assert not PLANS["shapes"].applicable("no-decomposition")


def _report(dice: dict[str, float], hd95: float = 5.0) -> dict:
    return {"mean": {"dice": dice, "hd95": {t: hd95 for t in dice}}}


def test_summary_is_the_mean_and_sample_sd_over_seeds():
    reports = [_report({"a": 0.8, "b": 0.6}), _report({"a": 0.9, "b": 0.7}), _report({"a": 0.7, "b": 0.2})]
    s = summarise(reports)
    assert s["dice"]["a"]["mean"] == pytest.approx(0.8)
    assert s["dice"]["a"]["sd"] == pytest.approx(statistics.stdev([0.8, 0.9, 0.7]))
    assert s["dice"]["mean"]["values"] == pytest.approx([0.7, 0.8, 0.45])
    assert s["hd95"]["b"]["mean"] == pytest.approx(5.0) and s["hd95"]["b"]["sd"] == 0


def test_a_difference_counts_only_beyond_both_spreads():
    a = {"mean": 0.80, "sd": 0.02, "n": 3}
    assert beyond_spread(a, {"mean": 0.70, "sd": 0.05, "n": 3})
    assert not beyond_spread(a, {"mean": 0.75, "sd": 0.04, "n": 3})
    assert not beyond_spread(a, {"mean": 0.10, "sd": 0.0, "n": 1})  # one seed: no spread known
    results = {"methods": {
        "ciml": {"seeds": 3, "scores": summarise([_report({"t": v}) for v in (0.80, 0.82, 0.81)])},
        "early-fusion": {"seeds": 3, "scores": summarise([_report({"t": v}) for v in (0.60, 0.62, 0.61)])},
        "maml": {"seeds": 3, "scores": summarise([_report({"t": v}) for v in (0.70, 0.90, 0.80)])}}}
    rows = {line.split("|")[1].strip(): line for line in main_table(results, ("ciml", "early-fusion", "maml")).splitlines()}
    assert "-0.200 *" in rows["early-fusion"]
    assert "*" not in rows["maml"]


def test_resuming_a_killed_run_uses_its_checkpoint(tmp_path):
    plan = PLANS["shapes"]
    assert "--resume" not in train_step(plan, tmp_path, "ciml", 0).command
    run = run_folder(tmp_path, "ciml", 0)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert "--resume" in train_step(plan, tmp_path, "ciml", 0).command


def test_a_run_killed_before_its_first_checkpoint_starts_again_and_keeps_its_remains(tmp_path):
    plan = PLANS["shapes"]
    run = run_folder(tmp_path, "ciml", 0)
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.jsonl").write_text("{}\n")
    assert "--resume" not in train_step(plan, tmp_path, "ciml", 0).command
    assert not run.exists()
    kept = list(run.parent.glob("seed0.interrupted-*"))
    assert len(kept) == 1 and (kept[0] / "log.jsonl").read_text() == "{}\n"


def test_the_missing_modality_methods_train_at_the_plans_imbalanced_rates(tmp_path):
    plan = PLANS["shapes"]
    command = train_step(plan, tmp_path, "ciml-dropout", 0).command
    assert command[command.index("--missing-rates") + 1] == "cue=0.7,echo=0.1"
    assert plan.card("ciml-dropout")["training"]["passion"]["enabled"] is False
    assert "passion" not in plan.card("ciml-passion").get("training", {})


def test_a_tiny_study_end_to_end_then_nothing_is_rerun(tmp_path):
    plan = plan_for("shapes", seeds=(0, 1), max_steps=2, train_cases=5, test_cases=2,
                    methods=("ciml", "primary-only"), missing_models=("ciml",), semi_supervised=())
    events: list[str] = []
    assert run_study(plan, tmp_path, workers=2, threads=1, on_event=events.append) == []
    results = write_report(plan, tmp_path)
    for method in ("ciml", "primary-only"):
        entry = results["methods"][method]
        assert entry["seeds"] == 2 and 0 <= entry["scores"]["dice"]["target"]["mean"] <= 1
        evaluated = json.loads((run_folder(tmp_path, method, 0) / "eval.json").read_text())["results"]
        assert len(evaluated["cases"]) == 2
    assert set(results["methods"]["ciml"]["missing"]) == {"cue", "echo"}
    assert (run_folder(tmp_path, "ciml", 0) / "case" / "effect_cue.nii.gz").is_file()
    for picture in ("dice.png", "missing.png", "case.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| ciml | 2 |" in text
    # The gates' diagnostics and the curves come from the training logs.
    assert {"cue", "echo"} == set(results["gates"]["ciml"]) and "primary-only" not in results["gates"]
    assert "| ciml | cue | 2 |" in text and (tmp_path / "curves.png").stat().st_size > 1000
    assert [p[0] for p in results["curves"]["ciml"]["0"]] == [2]

    marker = run_folder(tmp_path, "ciml", 0) / TRAINED
    before = marker.stat().st_mtime_ns, (tmp_path / "cards" / "ciml.json").read_text()
    assert run_study(plan, tmp_path, workers=1, on_event=events.append) == []
    assert (marker.stat().st_mtime_ns, (tmp_path / "cards" / "ciml.json").read_text()) == before

    # `ciml study` also writes the results in the result-file envelope (command, commit, machine, date)
    argv = ["study", "--task", "shapes", "--out", str(tmp_path), "--seeds", "0,1", "--methods", "ciml,primary-only",
            "--max-steps", "2", "--report-only"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["kind"] == "study" and record["command"] == "ciml " + " ".join(argv)
    assert record["machine"]["device"] == "cpu" and record["date"][:4].isdigit() and "commit" in record
    assert record["results"]["methods"]["ciml"]["seeds"] == 2
    assert record["results"]["methods"]["ciml"]["scores"] == results["methods"]["ciml"]["scores"]


@pytest.mark.parametrize("args, message", [
    (["--methods", "ciml,bogus"], "--methods bogus: not in the shapes plan"),
    (["--seeds", "0,x"], "--seeds 0,x: expected integers"),
    (["--max-steps", "0"], "--max-steps must be >= 1"),
    (["--jobs", "0"], "--jobs and --threads must be >= 1"),
])
def test_bad_study_options_are_one_clear_message(tmp_path, capsys, args, message):
    assert main(["study", "--task", "shapes", "--out", str(tmp_path / "s"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _log(run, events: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _gate(auxiliary: str, level: int, kl, ratio: float, collapsed: bool) -> dict:
    return {"subtask": "target", "auxiliary": auxiliary, "level": level, "kl": kl, "message_ratio": ratio,
            "collapsed": collapsed}


def test_gate_summary_averages_each_auxiliarys_gates_then_the_seeds(tmp_path):
    plan = plan_for("shapes", seeds=(0, 1), methods=("ciml", "no-bottleneck"), missing_models=(),
                    semi_supervised=())
    for seed, (kl, ratio) in enumerate([(0.4, 0.3), (0.6, 0.5)]):
        _log(run_folder(tmp_path, "ciml", seed), [
            {"event": "gates", "step": 100, "gates": [_gate("cue", 2, 9.0, 9.0, False)]},  # not the last
            {"event": "step", "step": 101},
            {"event": "gates", "step": 200, "gates": [
                _gate("cue", 2, kl, ratio, False), _gate("cue", 3, kl + 0.2, ratio + 0.2, True),
                _gate("echo", 2, 0.01, 0.02, True), _gate("echo", 3, 0.03, 0.04, True)]}])
    _log(run_folder(tmp_path, "no-bottleneck", 0), [
        {"event": "gates", "step": 200, "gates": [_gate("cue", 2, None, 0.7, False)]}])
    summary = training_log.gate_summary(plan, tmp_path)
    cue = summary["ciml"]["cue"]
    # per seed: (0.4 + 0.6) / 2 = 0.5 and (0.6 + 0.8) / 2 = 0.7; over seeds: 0.6 +- 0.1414
    assert cue["kl"]["mean"] == pytest.approx(0.6) and cue["kl"]["sd"] == pytest.approx(0.2 / 2 ** 0.5)
    assert cue["message_ratio"]["mean"] == pytest.approx(0.5) and cue["collapsed"]["mean"] == 0.5
    assert summary["ciml"]["echo"]["collapsed"]["mean"] == 1.0 and cue["seeds"] == 2
    assert summary["no-bottleneck"]["cue"]["kl"] is None
    table = training_log.gate_table(summary)
    assert "| ciml | cue | 2 | 0.600 ± 0.141 | 0.500 ± 0.141 | 0.50 ± 0.00 |" in table
    assert "| no-bottleneck | cue | 1 | – |" in table


@pytest.mark.parametrize("dice, flat", [
    ([0.2, 0.5, 0.7, 0.80, 0.81, 0.80], True),    # flattened
    ([0.2, 0.5, 0.6, 0.70, 0.75, 0.80], False),   # still climbing in its second half
    ([0.2, 0.5, 0.8, 0.85, 0.82, 0.70], False),   # fell away from its best
    ([0.2, 0.5, 0.8], False),                     # too few validations to say
])
def test_a_curve_has_converged_when_its_second_half_is_flat(dice, flat):
    assert training_log.converged([(100 * (i + 1), d) for i, d in enumerate(dice)]) is flat


def test_the_study_runs_every_step_on_the_chosen_device(tmp_path):
    plan = PLANS["shapes"]
    (tmp_path / "data" / "test" / "shapes-000").mkdir(parents=True)  # the figure's case
    for job in jobs(plan, tmp_path, "cuda")[:3]:
        for step in job.steps:
            assert step.command[step.command.index("--device") + 1] == "cuda"
