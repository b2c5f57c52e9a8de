"""`ciml train` and `ciml evaluate` on tiny sample data: learning, resume, DDP, exports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ciml.bundle.weights import load_bundle
from ciml.cli.main import main
from ciml.config import card_from_dict, load_card, preset_dict
from ciml.data import list_cases
from ciml.data.datasets import split_records
from ciml.data.synthetic import write_cases
from ciml.progress import Progress
from ciml.training.trainer import RunOptions, Trainer

PATCH = [32, 32, 32]


def tiny_shapes_card(tmp: Path, name: str = "card.json", network: dict | None = None, **training) -> Path:
    card = preset_dict("shapes")
    card["network"] = {"features": [4, 8, 16], **(network or {})}
    card["inference"] = {"roi_size": PATCH, "overlap": 0.25}
    card["training"] = {"patch_size": PATCH, "batch_size": 2, "learning_rate": 0.01, "validation_interval": 3,
                        **training}
    path = tmp / name
    card_from_dict(card).to_json(path)
    return path


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_cases("shapes", 5, root, seed=3)
    return root


def _train(args: list[str]) -> None:
    assert main(["train", "--progress", "none", *args]) == 0


def _losses(run: Path, term: str = "loss") -> list[float]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [x[term] for x in lines if x["event"] == "step"]


@pytest.mark.parametrize("extra", [
    ["--arch", "ciml"],
    ["--arch", "early-fusion"],
    ["--arch", "maml"],
    ["--arch", "ciml", "--missing-rates", "cue=0.5,echo=0.5"],
    ["--arch", "maml", "--missing-rates", "cue=0.5"],
], ids=["ciml", "early-fusion", "maml", "ciml-passion", "maml-passion"])
def test_every_architecture_trains_into_a_bundle_with_its_log(tmp_path, shapes_data, extra):
    run = tmp_path / "run"
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(tiny_shapes_card(tmp_path)),
            "--max-steps", "12", *extra])
    losses = _losses(run, "seg")  # the supervised term is logged at every step
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    bundle = load_bundle(run / "bundle")
    assert bundle.metadata["provenance"]["trained"] is True
    assert bundle.metadata["metrics"]["step"] in (3, 6, 9, 12)
    assert (run / "training-curve.png").stat().st_size > 0
    gates = [x for x in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if x["event"] == "gates"]
    if extra[1] == "ciml":  # every validation logs what each gate passes; other networks have no gates
        card = load_bundle(run / "bundle").card
        expected = {(s.name, a) for s in card.subtasks for a in s.auxiliaries}
        assert gates and all({(g["subtask"], g["auxiliary"]) for g in x["gates"]} == expected for x in gates)
        assert all({"kl", "active_channels", "sigma", "message_ratio", "collapsed"} <= set(g) for g in gates[-1]["gates"])
    else:
        assert gates == []


def test_semi_supervised_dtc_uses_unlabelled_cases(tmp_path, shapes_data):
    unlabelled = tmp_path / "unlabelled"
    write_cases("shapes", 2, unlabelled, seed=9)
    run = tmp_path / "run"
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(tiny_shapes_card(tmp_path)),
            "--max-steps", "12", "--unlabeled", str(unlabelled)])
    steps = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"step"' in x]
    steps = [s for s in steps if s["event"] == "step"]
    assert all("dtc_unlabelled" in s for s in steps)
    assert load_bundle(run / "bundle").card.network.level_set_head


class _Killed(Exception):
    pass


class _KillAfter(Progress):
    """Stands in for a SIGKILL: the run dies in the middle of step ``step`` (after a checkpoint)."""

    def __init__(self, step: int):
        super().__init__("none")
        self.kill_step = step

    def update(self, stage, fraction, **fields):
        if fields.get("step") == self.kill_step:
            raise _Killed()


def _trainer(run: Path, card_path: Path, data: Path, progress=None) -> Trainer:
    card = load_card(card_path)
    train, validation = split_records(list_cases(data), 0.2, card.training.seed)
    return Trainer(card, RunOptions(out=str(run), max_steps=7, device="cpu"), train, validation, [], progress)


def test_resume_ends_with_the_same_weights(tmp_path, shapes_data):
    card = tiny_shapes_card(tmp_path)
    straight = _trainer(tmp_path / "a", card, shapes_data).run()
    with pytest.raises(_Killed):
        _trainer(tmp_path / "b", card, shapes_data, _KillAfter(5)).run()
    resumed = _trainer(tmp_path / "b", card, shapes_data).run(resume=True)
    assert straight["steps"] == resumed["steps"] == 7
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log if '"event": "step"' in x] == list(range(1, 8))


def test_resume_via_the_command_line_needs_a_run(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume", "--progress", "none"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_a_new_run_never_overwrites_an_old_one(tmp_path, shapes_data, capsys):
    run = tmp_path / "run"
    args = ["--data", str(shapes_data), "--out", str(run), "--card", str(tiny_shapes_card(tmp_path)), "--max-steps", "3"]
    _train(args)
    before = (run / "bundle" / "model.safetensors").read_bytes()
    assert main(["train", "--progress", "none", *args]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "bundle" / "model.safetensors").read_bytes() == before


def test_fine_tuning_from_a_bundle_with_frozen_encoders(tmp_path, shapes_data):
    base = tmp_path / "base"
    _train(["--data", str(shapes_data), "--out", str(base), "--card", str(tiny_shapes_card(tmp_path)), "--max-steps", "3"])
    tuned = tmp_path / "tuned"
    _train(["--data", str(shapes_data), "--out", str(tuned), "--init", str(base / "bundle"), "--freeze-encoders",
            "--max-steps", "3"])
    a, b = load_bundle(base / "bundle").network.state_dict(), load_bundle(tuned / "bundle").network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoders."))
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("decoders."))


def test_config_file_sets_hyperparameters_and_the_command_line_wins(tmp_path, shapes_data):
    config = tmp_path / "config.yaml"
    config.write_text(f"card: {tiny_shapes_card(tmp_path)}\nmax_steps: 2\ntraining:\n  learning_rate: 0.005\n  seed: 4\n")
    run = tmp_path / "run"
    _train(["--data", str(shapes_data), "--out", str(run), "--config", str(config), "--seed", "7"])
    saved = json.loads((run / "config.json").read_text())
    assert saved["card"]["training"]["learning_rate"] == 0.005
    assert saved["card"]["training"]["seed"] == 7
    assert saved["max_steps"] == 2
    assert load_bundle(run / "bundle").card.training.seed == 7


def test_the_time_limit_stops_validates_and_keeps_a_loadable_bundle(tmp_path, shapes_data, capsys):
    """0.01 minutes is less than the run needs to start, so it stops after its first step; its
    validations are far apart (1000 steps), so the bundle exists only because the limit
    validated before stopping."""
    run = tmp_path / "run"
    card = tiny_shapes_card(tmp_path, validation_interval=1000)
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(card), "--max-steps", "500",
            "--max-minutes", "0.01"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in log if x["event"] == "step"]
    stop = [x for x in log if x["event"] == "stop"]
    assert 1 <= len(steps) < 500 and stop == [{"event": "stop", "step": steps[-1], "reason": "time limit",
                                               "max_minutes": 0.01}]
    assert [x["step"] for x in log if x["event"] == "validation"] == [steps[-1]]
    bundle = load_bundle(run / "bundle")
    assert bundle.metadata["provenance"]["steps"] == steps[-1] and bundle.metadata["metrics"]["step"] == steps[-1]
    err = capsys.readouterr().err
    assert f"stopped at step {steps[-1]} of 500: the time limit of 0.01 min was reached" in err
    assert "stopped by the time limit of 0.01 min" in err


def test_the_time_limit_without_validation_cases_keeps_the_latest_weights(tmp_path, shapes_data):
    run = tmp_path / "run"
    _train(["--data", str(shapes_data), "--out", str(run), "--card", str(tiny_shapes_card(tmp_path, validation_interval=1000)),
            "--max-steps", "500", "--max-minutes", "0.01", "--val-fraction", "0"])
    steps = [x["step"] for x in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if x["event"] == "step"]
    assert len(steps) < 500 and load_bundle(run / "bundle").metadata["provenance"]["steps"] == steps[-1]


@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "abc", "nan", "inf"])
def test_a_time_limit_that_is_not_a_positive_number_is_one_line(tmp_path, shapes_data, capsys, value):
    assert main(["train", "--progress", "none", "--data", str(shapes_data), "--out", str(tmp_path / "run"),
                 "--card", str(tiny_shapes_card(tmp_path)), "--max-minutes", value]) == 2
    err = capsys.readouterr().err
    assert err == f"ciml train: error: --max-minutes {value}: expected a number of minutes > 0\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [
    (["--max-steps", "2"], "--data is required"),
    (["--data", "/nonexistent", "--max-steps", "2"], "/nonexistent"),
    (["--config", "/nonexistent.yaml"], "file not found"),
    (["--missing-rates", "cue=lots"], "NAME=P"),
    (["--missing-rates", "t1=0.5"], "training.missing_rates.t1"),
])
def test_bad_training_input_is_one_message(tmp_path, shapes_data, capsys, args, message):
    base = ["--out", str(tmp_path / "run"), "--card", str(tiny_shapes_card(tmp_path))]
    if "--data" not in args and "--max-steps" not in args:
        base += ["--data", str(shapes_data)]
    assert main(["train", "--progress", "none", *base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_label_value_the_card_does_not_know_is_one_message(tmp_path, capsys):
    """Found while caching the cases, inside a MONAI transform, which wraps it in a RuntimeError."""
    import SimpleITK as sitk

    data = tmp_path / "data"
    write_cases("shapes", 3, data, seed=3)
    seg = next(data.rglob("*_seg.nii.gz"))
    image = sitk.ReadImage(str(seg))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 7
    stamped = sitk.GetImageFromArray(array)
    stamped.CopyInformation(image)
    sitk.WriteImage(stamped, str(seg))
    code = main(["train", "--progress", "json", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--card", str(tiny_shapes_card(tmp_path)), "--max-steps", "2", "--val-fraction", "0"])
    captured = capsys.readouterr()
    assert code == 2
    assert "label value(s) 7" in captured.err and "unexpected error" not in captured.err
    assert "label value(s) 7" in json.loads(captured.out.strip().splitlines()[-1])["message"]


def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path, shapes_data):
    """Same global batch (2): two processes of batch 1 against one process of batch 2.

    The gates' bottleneck samples noise per process, which no two set-ups can share, so this
    compares the deterministic part of training: CIML with the bottleneck switched off.
    """
    common = ["--data", str(shapes_data), "--max-steps", "3", "--progress", "none", "--device", "cpu"]
    deterministic = {"gate_bottleneck": False}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    card_one = tiny_shapes_card(tmp_path, "one.json", deterministic, batch_size=2)
    one = subprocess.run([sys.executable, "-m", "ciml", "train", "--out", str(tmp_path / "one"),
                          "--card", str(card_one), *common], capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr
    card_two = tiny_shapes_card(tmp_path, "two.json", deterministic, batch_size=1)
    # --standalone: torchrun picks a free local port (a fixed one collided once with a lingering run).
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "ciml", "train", "--out", str(tmp_path / "two"),
                          "--card", str(card_two), *common], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["model"]
    init = load_bundle(_untrained(tmp_path, card_one)).network.state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    apart = max((a[k] - b[k]).abs().max().item() for k in a)
    # Adam scales each update to about the learning rate (0.01), so float rounding in the
    # all-reduced gradients shows as differences of that order only where a gradient is ~0.
    assert moved > 0.02 and apart < 0.1 * moved, (moved, apart)


def _untrained(tmp: Path, card: Path) -> Path:
    out = tmp / "untrained"
    assert main(["init", "--card", str(card), "--out", str(out)]) == 0
    return out
