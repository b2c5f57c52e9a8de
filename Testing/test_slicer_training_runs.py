"""Training from the Slicer module, outside Slicer, with real processes: a run never loses a
bundle it wrote (failed, incomplete, cancelled, or with nothing written), and the real worker
trains and registers its bundle in a Python without matplotlib."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slicer_lib_helpers
from slicer_lib_helpers import FakeTimer

from ciml.config import card_from_dict, preset_dict
from CIMLSegmentationLib import training

MODULE_DIR = slicer_lib_helpers.MODULE_DIR
SAMPLE_BUNDLE = slicer_lib_helpers.SAMPLE_BUNDLE


# --- training never deletes a bundle it wrote -------------------------------------------------

FAKE_TRAIN = """#!{python}
# Stands in for `python -m ciml train ... --out RUN`: writes RUN/bundle, then fails (as `ciml
# train` did when drawing its curve without matplotlib) or waits to be cancelled.
import os, pathlib, shutil, sys, time
run = sys.argv[sys.argv.index("--out") + 1]
shutil.copytree({bundle!r}, run + "/bundle")
if {truncate}:
    weights = pathlib.Path(run, "bundle", "model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
print('{{"event": "progress", "stage": "train", "fraction": 1.0}}', flush=True)
if {wait}:
    time.sleep(60)
print("ModuleNotFoundError: No module named 'matplotlib'", file=sys.stderr)
sys.exit(3)
"""


def _fake_python(tmp_path, truncate=False, wait=False):
    path = tmp_path / f"python-{int(truncate)}{int(wait)}"
    path.write_text(FAKE_TRAIN.format(python=sys.executable, bundle=str(SAMPLE_BUNDLE), truncate=truncate, wait=wait))
    path.chmod(0o755)
    return str(path)


def _training(tmp_path, python, **callbacks):
    return training.TrainingJob(str(MODULE_DIR), str(tmp_path), str(tmp_path / "models"), python=python,
                                **callbacks)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in worker is a script with a #! line")
def test_a_failed_training_keeps_and_registers_the_bundle_it_wrote(tmp_path):
    run = _training(tmp_path, _fake_python(tmp_path)).start().wait(timeout=30)
    assert run.status == "failed" and run.error == "ModuleNotFoundError: No module named 'matplotlib'"
    kept = Path(run.kept)
    assert kept == Path(run.temp_dir) / "run" and (kept / "bundle" / "model.safetensors").is_file()
    assert kept.parent.parent == tmp_path / training.RUNS_FOLDER  # beside the models folder, not in /tmp
    assert run.model is not None and Path(run.model.path) == tmp_path / "models" / "brats-sample"
    assert (Path(run.model.path) / "model.safetensors").read_bytes() == (SAMPLE_BUNDLE / "model.safetensors").read_bytes()
    text = run.outcome_text()
    assert text.startswith("Failed: ModuleNotFoundError") and run.model.path in text and run.kept in text


@pytest.mark.skipif(os.name == "nt", reason="the stand-in worker is a script with a #! line")
def test_an_incomplete_bundle_is_kept_but_not_registered(tmp_path):
    run = _training(tmp_path, _fake_python(tmp_path, truncate=True)).start().wait(timeout=30)
    assert run.status == "failed" and run.model is None and Path(run.kept, "bundle").is_dir()
    assert "SHA-256 does not match" in run.kept_problem and not (tmp_path / "models" / "brats-sample").exists()
    assert run.kept in run.outcome_text() and "could not be added to the Model list" in run.outcome_text()


@pytest.mark.skipif(os.name == "nt", reason="the stand-in worker is a script with a #! line")
def test_a_cancelled_training_keeps_its_last_bundle(tmp_path):
    finished = []
    run = _training(tmp_path, _fake_python(tmp_path, wait=True), timer=FakeTimer,
                    on_progress=lambda event: run.cancel(), on_finished=finished.append).start()
    FakeTimer.last.run()
    assert finished == [run] and run.status == "cancelled" and run.model is not None
    assert Path(run.kept, "bundle").is_dir() and "Cancelled." in run.outcome_text()


@pytest.mark.skipif(os.name == "nt", reason="the stand-in worker is a script with a #! line")
def test_a_training_that_wrote_no_bundle_leaves_nothing(tmp_path):
    script = tmp_path / "python-nothing"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('ciml train: error: no labelled cases', file=sys.stderr)\n"
                      "sys.exit(2)\n")
    script.chmod(0o755)
    run = _training(tmp_path, str(script)).start().wait(timeout=30)
    assert run.status == "failed" and run.error == "no labelled cases" and run.kept == "" and run.model is None
    assert not Path(run.temp_dir).exists() and run.outcome_text() == "Failed: no labelled cases"


def test_bundle_written_sees_a_bundle_being_replaced(tmp_path):
    assert not training.bundle_written(tmp_path)
    (tmp_path / ".bundle.old-123").mkdir()
    assert training.bundle_written(tmp_path)


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    """A dataset of 5 small shapes cases and an untrained bundle with a tiny network."""
    root = tmp_path_factory.mktemp("tiny-training")
    card = preset_dict("shapes")
    card["network"] = {"features": [4, 8, 16]}
    card["inference"] = {"roi_size": [32, 32, 32], "overlap": 0.25}
    card["training"] = {"patch_size": [32, 32, 32], "batch_size": 2, "validation_interval": 3}
    card_from_dict(card).to_json(root / "card.json")
    env = dict(os.environ, PYTHONPATH=str(MODULE_DIR), OMP_NUM_THREADS="1")
    for args in (["sample-data", "--kind", "shapes", "--cases", "5", "--out", str(root / "data")],
                 ["init", "--card", str(root / "card.json"), "--out", str(root / "untrained")]):
        subprocess.run([sys.executable, "-m", "ciml", *args], check=True, capture_output=True, env=env, timeout=300)
    return root


def test_ciml_train_without_matplotlib_succeeds_and_the_panel_job_registers_its_bundle(tiny_training, tmp_path,
                                                                                        monkeypatch):
    """The real worker, as the panel runs it (with the time limit the user sets: 0.01 min ends the
    run after its first step, which validates), in a Python where matplotlib cannot be imported."""
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked in this test')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker.parent))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a shared test machine: torch's default threads fight
    log = []
    run = training.TrainingJob(str(MODULE_DIR), str(tiny_training / "data"), str(tmp_path / "models"),
                               init=str(tiny_training / "untrained"), max_steps=50, max_minutes=0.01,
                               python=sys.executable, on_log=log.extend).start()
    assert run.worker.args[-4:] == ["--max-minutes", "0.01", "--progress", "json"]
    assert run.running(), run.error
    run.wait(timeout=300)
    assert run.status == "done", run.error + "\n" + run.log
    assert run.worker.returncode == 0
    assert any("matplotlib is not installed" in line for line in log)  # one note, in the panel's log
    assert sum("matplotlib" in line for line in log) == 1
    assert run.model is not None and run.model.trained and Path(run.model.path).parent == tmp_path / "models"
    metadata = json.loads((Path(run.model.path) / "metadata.json").read_text())
    steps = metadata["provenance"]["steps"]
    assert 1 <= steps < 50 and metadata["metrics"]["step"] == steps  # the step the limit validated
    assert any(line.endswith(f"stopped at step {steps} of 50: the time limit of 0.01 min was reached")
               for line in log)
    assert not Path(run.temp_dir).exists()  # done: the bundle was copied, the run folder removed
