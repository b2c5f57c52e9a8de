"""The background worker wrapper and the background jobs with real processes: progress lines,
errors, cancel of the whole process tree, temp-folder cleanup, the timer-driven job shape that
segmentation and training share, and the commands the module builds."""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import slicer_lib_helpers
from slicer_lib_helpers import FakeTimer, alive

from CIMLSegmentationLib import job, process, training


def _script(tmp_path, body):
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_progress_events_arrive_and_success(tmp_path):
    args = _script(tmp_path, """
        import sys, time
        sys.stdout.write('{"event": "progress", "stage": "load", "fr'); sys.stdout.flush(); time.sleep(0.1)
        print('action": 0.5, "elapsed_s": 0.1, "eta_s": 0.1}')
        print("some library chatter")
        print("human message", file=sys.stderr)
        sys.stdout.write('{"event": "done"}')  # no final newline
    """)
    worker = process.WorkerProcess(args).start()
    assert worker.wait(timeout=10) == 0
    assert [e["event"] for e in worker.events] == ["progress", "done"]
    assert worker.events[0]["fraction"] == 0.5 and worker.succeeded()
    assert "human message" in worker.stderr_text and worker.elapsed > 0


def test_user_error_line_and_out_of_memory(tmp_path):
    args = _script(tmp_path, """
        import sys
        print("loading...", file=sys.stderr)
        print("ciml segment: error: input 't2': /x/t2.nrrd: no such file", file=sys.stderr)
        sys.exit(2)
    """)
    worker = process.WorkerProcess(args).start()
    assert worker.wait(timeout=10) == 2 and not worker.succeeded()
    assert worker.error() == "input 't2': /x/t2.nrrd: no such file"
    assert process.error_message("", [{"event": "error", "message": "CUDA out of memory. Tried to allocate 2 GiB"}]) \
        == "CUDA out of memory. Tried to allocate 2 GiB"
    assert process.error_message("Traceback...\nRuntimeError: bad\n", returncode=3) == "RuntimeError: bad"
    assert process.error_message("", returncode=-9) == "the worker stopped with exit code -9"
    assert process.is_out_of_memory("torch.OutOfMemoryError: CUDA out of memory.")
    assert process.is_out_of_memory("ciml segment: error: the GPU ran out of memory")
    assert not process.is_out_of_memory("input 't2' has NaN voxels")


@pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX; Windows uses taskkill /T")
def test_cancel_kills_the_whole_tree_and_removes_temp(tmp_path):
    temp = tmp_path / "job"
    temp.mkdir()
    (temp / "t1.nrrd").write_text("x")
    pids = tmp_path / "pids"
    args = _script(tmp_path, f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pids)!r}, "w").write(f"{{child.pid}}")
        print('{{"event": "progress", "stage": "infer", "fraction": 0.1}}', flush=True)
        time.sleep(60)
    """)
    worker = process.WorkerProcess(args, temp_dir=str(temp)).start()
    deadline = time.monotonic() + 10
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pids.read_text())
    assert alive(worker.proc.pid) and alive(grandchild)
    started = time.monotonic()
    worker.cancel()
    while (alive(worker.proc.pid) or alive(grandchild)) and time.monotonic() - started < 2:
        time.sleep(0.05)
    assert not alive(worker.proc.pid) and not alive(grandchild)
    assert time.monotonic() - started < 2
    assert not temp.exists() and worker.error() == "Cancelled." and not worker.succeeded()


def test_commands_and_environment(tmp_path):
    args = process.segment_command("py", "/m/brats", {"t1": "/t/t1.nrrd", "flair": "/t/flair.nrrd"}, "/t/out",
                                   device="cpu", heat_maps=False)
    assert args == ["py", "-m", "ciml", "segment", "--model", "/m/brats", "--input", "t1=/t/t1.nrrd",
                    "--input", "flair=/t/flair.nrrd", "--out", "/t/out", "--device", "cpu",
                    "--format", "nrrd", "--progress", "json", "--no-cam"]
    assert training.train_command("py", "/d", "/r", init="/m/b", max_steps=50) == [
        "py", "-m", "ciml", "train", "--data", "/d", "--out", "/r", "--init", "/m/b",
        "--max-steps", "50", "--bundle", "last", "--progress", "json"]
    assert training.train_command("py", "/d", "/r", max_minutes=10) == [  # the panel's time limit alone
        "py", "-m", "ciml", "train", "--data", "/d", "--out", "/r", "--bundle", "last", "--max-minutes", "10.0",
        "--progress", "json"]
    env = process.worker_environment("/mod", {"PYTHONPATH": "/a"})
    assert env["PYTHONPATH"] == os.pathsep.join(["/mod", "/a"]) and env["PYTHONUNBUFFERED"] == "1"
    (tmp_path / "PythonSlicer").write_text("")
    assert process.python_executable(str(tmp_path / "SlicerApp-real")) == str(tmp_path / "PythonSlicer")
    assert process.python_executable(sys.executable) == sys.executable
    assert training.train_disabled_reason("") == "Choose a dataset folder."
    assert "does not exist" in training.train_disabled_reason(str(tmp_path / "nope"))
    assert training.train_disabled_reason(str(tmp_path)) == ""


def test_worker_runs_the_real_ciml_package(tmp_path):
    """The command line the module builds reaches the shipped package (``ciml info``)."""
    module_dir = slicer_lib_helpers.MODULE_DIR
    worker = process.WorkerProcess([sys.executable, "-m", "ciml", "card", "--preset", "autopet"],
                                   env=process.worker_environment(str(module_dir)), cwd=str(tmp_path)).start()
    assert worker.wait(timeout=60) == 0, worker.stderr_text
    assert '"autopet"' in "".join(worker._parser.noise)  # plain JSON card, not an event: kept as noise


# --- background jobs: the shape segmentation and training share ----------------------------

class ScriptJob(job.BackgroundJob):
    """A job whose worker is a Python script; it writes an input and takes ``out/result.txt``."""

    POLL_MS = 20

    def __init__(self, body, finish_raises=False, **kwargs):
        super().__init__(str(slicer_lib_helpers.MODULE_DIR), python=sys.executable, **kwargs)
        self.body, self.finish_raises, self.result = body, finish_raises, None

    def _prepare(self, folder):
        if self.body is None:
            raise ValueError("t2: the volume has no image data.")
        (Path(folder) / "input.txt").write_text("x")
        script = Path(folder) / "worker.py"
        script.write_text(textwrap.dedent(self.body))
        return [self.python, str(script), folder]

    def _finish(self, folder):
        if self.finish_raises:
            raise OSError("segmentation.nrrd is truncated")
        self.result = (Path(folder) / "out" / "result.txt").read_text()

    def _finish_error(self, exc):
        return f"the results could not be loaded: {exc}"


def _recorded(**kwargs):
    events, finished = [], []
    kwargs.setdefault("on_progress", events.append)
    kwargs.setdefault("on_finished", finished.append)
    return events, finished, kwargs


GOOD_WORKER = """
    import os, sys, time
    folder = sys.argv[1]
    assert open(os.path.join(folder, "input.txt")).read() == "x"
    for i in range(3):
        print('{"event": "progress", "stage": "infer", "fraction": %s}' % ((i + 1) / 4), flush=True)
        time.sleep(0.05)
    os.makedirs(os.path.join(folder, "out"))
    open(os.path.join(folder, "out", "result.txt"), "w").write("segmented")
    print("worker chatter", file=sys.stderr)
    sys.stdout.write('{"event": "done"}')  # the last event, without a newline
"""


def test_job_driven_by_its_timer_finishes_once_and_cleans_up():
    events, finished, kwargs = _recorded(timer=FakeTimer)
    run = ScriptJob(GOOD_WORKER, **kwargs).start()
    timer = FakeTimer.made[-1]
    assert run.running() and timer.active and timer.interval_ms == ScriptJob.POLL_MS
    assert Path(run.temp_dir).is_dir()
    timer.run()
    assert [e["event"] for e in events] == ["progress"] * 3 + ["done"]  # the last event is not lost
    assert finished == [run] and run.status == "done" and run.error == ""
    assert run.result == "segmented" and run.outcome_text() == "Done."
    assert not Path(run.temp_dir).exists() and "worker chatter" in run.log and run.elapsed > 0
    run.poll(), run.cancel(), run.wait()  # after the end: nothing more happens
    assert finished == [run] and run.status == "done"


def test_job_failures_are_one_message():
    _, finished, kwargs = _recorded()
    failed = ScriptJob("""
        import sys
        print("ciml segment: error: input 't2': /x/t2.nrrd: no such file", file=sys.stderr)
        sys.exit(2)
    """, **kwargs).start().wait(timeout=20)
    assert failed.status == "failed" and failed.error == "input 't2': /x/t2.nrrd: no such file"
    assert failed.outcome_text() == "Failed: input 't2': /x/t2.nrrd: no such file"
    unreadable = ScriptJob(GOOD_WORKER, finish_raises=True, **kwargs).start().wait(timeout=20)
    assert unreadable.status == "failed"
    assert unreadable.error == "the results could not be loaded: segmentation.nrrd is truncated"
    assert finished == [failed, unreadable]
    assert not Path(failed.temp_dir).exists() and not Path(unreadable.temp_dir).exists()


def test_job_that_cannot_start_reports_before_start_returns():
    _, finished, kwargs = _recorded(timer=FakeTimer)
    run = ScriptJob(None, **kwargs).start()
    assert finished == [run] and run.status == "failed" and run.worker is None
    assert run.error == "t2: the volume has no image data." and not FakeTimer.made[-1].active
    assert not Path(run.temp_dir).exists() and run.log == "" and run.elapsed == 0.0
    run.wait(), run.cancel()
    assert finished == [run]
    with pytest.raises(RuntimeError, match="starts once"):
        run.start()


@pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX; Windows uses taskkill /T")
def test_job_cancel_from_a_callback_ends_the_tree_once():
    finished = []
    run = ScriptJob("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print('{"event": "progress", "stage": "infer", "fraction": 0.1, "child": %d}' % child.pid, flush=True)
        time.sleep(60)
    """, timer=FakeTimer, on_progress=lambda event: run.cancel(), on_finished=finished.append)
    run.start()
    started = time.monotonic()
    FakeTimer.made[-1].run()
    child = run.worker.events[0]["child"]
    while alive(child) and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert finished == [run] and run.status == "cancelled" and run.outcome_text() == "Cancelled."
    assert not alive(run.worker.proc.pid) and not alive(child) and not Path(run.temp_dir).exists()


def test_failing_callbacks_do_not_break_the_job(caplog):
    def broken(_):
        raise RuntimeError("a panel bug")

    run = ScriptJob(GOOD_WORKER, on_progress=broken, on_finished=broken).start().wait(timeout=20)
    assert run.status == "done" and run.result == "segmented"
    assert "callback failed" in caplog.text and "a panel bug" in caplog.text


FAKE_TRAIN = """#!{python}
# Stands in for `python -m ciml train ... --out RUN`: reports progress and writes RUN/bundle.
import shutil, sys
run = sys.argv[sys.argv.index("--out") + 1]
print('{{"event": "progress", "stage": "train", "fraction": 0.5}}', flush=True)
if {write_bundle}:
    shutil.copytree({bundle!r}, run + "/bundle")
print('{{"event": "done"}}', flush=True)
"""


def _fake_python(tmp_path, write_bundle=True):
    path = tmp_path / ("python-ok" if write_bundle else "python-no-bundle")
    bundle = slicer_lib_helpers.SAMPLE_BUNDLE
    path.write_text(FAKE_TRAIN.format(python=sys.executable, write_bundle=write_bundle, bundle=str(bundle)))
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in worker is a script with a #! line")
def test_training_job_registers_its_bundle(tmp_path):
    events, finished, kwargs = _recorded(timer=FakeTimer)
    models_dir = tmp_path / "models"
    run = training.TrainingJob(str(slicer_lib_helpers.MODULE_DIR), str(tmp_path), str(models_dir), max_steps=5,
                               python=_fake_python(tmp_path), **kwargs).start()
    timer = FakeTimer.made[-1]
    assert timer.interval_ms == training.TrainingJob.POLL_MS and run.worker.args[1:4] == ["-m", "ciml", "train"]
    timer.run()
    assert finished == [run] and run.status == "done", run.error
    assert [e["event"] for e in events] == ["progress", "done"]
    assert run.model.origin == "models folder" and Path(run.model.path) == models_dir / "brats-sample"
    assert run.model.card.reference == "t1ce" and run.outcome_text() == f"Done: saved as '{run.model.path}'."
    assert not Path(run.temp_dir).exists()

    lost = training.TrainingJob(str(slicer_lib_helpers.MODULE_DIR), str(tmp_path), str(models_dir),
                                python=_fake_python(tmp_path, write_bundle=False)).start().wait(timeout=20)
    assert lost.status == "failed" and lost.error.endswith("run/bundle: no such bundle folder")
    assert lost.outcome_text().startswith("Training finished but its bundle could not be saved: ")
