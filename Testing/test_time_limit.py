"""`ciml train --max-minutes`: the clock alone bounds a run, drives its learning-rate decay, and
`--keep-bundles` keeps the weights of every validation step for scoring the run's course afterwards."""

from __future__ import annotations

import json
import math

import torch

from test_train import _train, shapes_data, tiny_shapes_card  # noqa: F401 - the fixture is used by name

from ciml.bundle.weights import load_bundle
from ciml.cli.main import main
from ciml.config import load_card
from ciml.data import list_cases
from ciml.training.schedule import UNTIL_TIME_LIMIT, cosine_with_warmup
from ciml.training.trainer import RunOptions, Trainer


def test_the_decay_follows_the_clock_when_it_is_further_along_than_the_steps():
    clock = {"used": 0.0}
    factor = cosine_with_warmup(1000, warmup=2, time_used=lambda: clock["used"])
    assert factor(0) == 0.5 and factor(1) == 1.0  # warm-up counts steps only
    assert factor(2) == 1.0
    clock["used"] = 0.5
    assert math.isclose(factor(3), 0.5)  # half the time is gone, not 0.1 % of the steps
    clock["used"] = 1.2
    assert math.isclose(factor(4), 0.0, abs_tol=1e-12)  # past the limit: the rate stays at 0
    clock["used"] = 0.0
    assert math.isclose(factor(501), 0.5, abs_tol=1e-3)  # the steps are further along


def test_without_steps_the_time_limit_alone_bounds_the_run(tmp_path, shapes_data):  # noqa: F811
    card = load_card(tiny_shapes_card(tmp_path, max_steps=3))
    records = list_cases(shapes_data)
    timed = Trainer(card, RunOptions(out=str(tmp_path / "a"), max_minutes=5, device="cpu"), records, [])
    stepped = Trainer(card, RunOptions(out=str(tmp_path / "b"), max_minutes=5, max_steps=7, device="cpu"), records, [])
    plain = Trainer(card, RunOptions(out=str(tmp_path / "c"), device="cpu"), records, [])
    assert (timed.max_steps, stepped.max_steps, plain.max_steps) == (UNTIL_TIME_LIMIT, 7, 3)


def test_a_run_cut_by_the_clock_ends_at_a_learning_rate_of_zero(tmp_path, shapes_data):  # noqa: F811
    """0.01 minutes pass before the first step ends: the decay has followed the clock to its end,
    although the steps (1000) have barely begun."""
    run = tmp_path / "run"
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(tiny_shapes_card(tmp_path)),
            "--max-steps", "1000", "--max-minutes", "0.01"])
    lrs = [x["lr"] for x in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if x["event"] == "step"]
    assert len(lrs) < 1000 and lrs[-1] == 0.0


def test_every_validation_step_keeps_its_bundle_and_time(tmp_path, shapes_data):  # noqa: F811
    run = tmp_path / "run"
    card = tiny_shapes_card(tmp_path, validation_interval=2)
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(card), "--max-steps", "5", "--keep-bundles"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    validations = [x for x in log if x["event"] == "validation"]
    assert [v["step"] for v in validations] == [2, 4, 5]
    assert [v["elapsed_s"] for v in validations] == sorted(v["elapsed_s"] for v in validations)
    assert [x["step"] for x in log if x["event"] == "bundle_kept"] == [2, 4, 5]
    assert sorted(p.name for p in (run / "bundles").iterdir()) == ["step-000002", "step-000004", "step-000005"]
    assert load_bundle(run / "bundles" / "step-000004").metadata["metrics"]["step"] == 4


def test_without_validation_cases_the_weights_of_every_interval_are_kept(tmp_path, shapes_data):  # noqa: F811
    run = tmp_path / "run"
    card = tiny_shapes_card(tmp_path, validation_interval=2)
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(card), "--max-steps", "5",
            "--val-fraction", "0", "--keep-bundles"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert not [x for x in log if x["event"] == "validation"]
    assert [x["step"] for x in log if x["event"] == "bundle_kept"] == [2, 4, 5]
    assert sorted(p.name for p in (run / "bundles").iterdir()) == ["step-000002", "step-000004", "step-000005"]
    final, last = load_bundle(run / "bundle"), load_bundle(run / "bundles" / "step-000005")
    assert all(torch.equal(a, b) for a, b in zip(final.network.state_dict().values(), last.network.state_dict().values()))


def test_the_bundle_is_the_best_validation_or_the_last_weights(tmp_path, shapes_data):  # noqa: F811
    """With `--bundle last` RUN/bundle is the final step's weights whatever the validation said;
    with the default it is the step of the best validation Dice."""
    card = tiny_shapes_card(tmp_path, validation_interval=2)
    best_steps = []
    for choice in ("best", "last"):
        run = tmp_path / choice
        _train(["--data", str(shapes_data), "--out", str(run), "--card", str(card), "--max-steps", "6",
                "--bundle", choice, "--keep-bundles"])
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        best = max((x for x in log if x["event"] == "validation"), key=lambda x: x["mean_dice"])["step"]
        best_steps.append(best)
        kept = load_bundle(run / "bundle")
        expected = best if choice == "best" else 6
        assert kept.metadata["metrics"]["step"] == expected
        same = load_bundle(run / "bundles" / f"step-{expected:06d}")
        assert all(torch.equal(a, b) for a, b in zip(kept.network.state_dict().values(), same.network.state_dict().values()))
    assert best_steps[0] == best_steps[1] != 6  # the same seeded runs, whose best is not their last step


def test_a_bundle_choice_that_is_not_best_or_last_is_one_line(tmp_path, shapes_data, capsys):  # noqa: F811
    config = tmp_path / "run.yaml"
    config.write_text("bundle: newest\n")
    assert main(["train", "--progress", "none", "--data", str(shapes_data), "--out", str(tmp_path / "run"),
                 "--card", str(tiny_shapes_card(tmp_path)), "--config", str(config)]) == 2
    assert capsys.readouterr().err == "ciml train: error: bundle: expected one of best, last, got 'newest'\n"
