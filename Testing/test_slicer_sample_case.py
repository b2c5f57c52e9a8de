"""Making the sample case of Sample Data in the background, outside Slicer: the command the job
builds, its progress from the worker's own lines, the real worker driven by the job's timer as
Slicer drives it, a cached case that needs no worker, failures as one message, Cancel and the
waiting path's time limit, each leaving nothing but complete files in the cache."""

import ast
import os
import sys
import textwrap
import time

import pytest
import SimpleITK as sitk

import slicer_lib_helpers
from slicer_lib_helpers import FakeTimer, alive

from CIMLSegmentationLib import process, progress, samplecase

MODULE_DIR = slicer_lib_helpers.MODULE_DIR


def _fake_worker(folder, body):
    """A module folder whose `python -m ciml` runs ``body`` (it comes first on PYTHONPATH)."""
    (folder / "ciml").mkdir(parents=True)
    (folder / "ciml" / "__init__.py").write_text("")
    (folder / "ciml" / "__main__.py").write_text(textwrap.dedent(body))
    return folder


def _registered_only(cache):
    return sorted(p.name for p in cache.iterdir()) == sorted(samplecase.file_name(m) for m in samplecase.MODALITIES)


def test_the_command_it_builds():
    assert samplecase.generate_command("/slicer/bin/PythonSlicer", "/cache/ciml-sample-x") == [
        "/slicer/bin/PythonSlicer", "-m", "ciml", "sample-data", "--kind", "brats", "--cases", "1",
        "--out", "/cache/ciml-sample-x"]


def test_progress_comes_from_the_workers_wrote_lines_in_the_json_lines_shape():
    lines = ["Reading the phantom", "wrote /cache/ciml-sample-x/BraTS-sample-000", "1 brats case(s) in /c (0.2 s)"]
    assert samplecase.progress_events(lines, 0) == [{"event": "progress", "stage": "sample case", "fraction": 1.0}]
    assert samplecase.progress_events(["noise", "wrote"], 0) == []  # 'wrote' without a folder is not a case
    event = samplecase.progress_events(lines, 0)[0]
    assert progress.status_text(event) == "Making the sample case: 100%" and progress.progress_percent(event) == 100


def test_the_job_makes_the_case_in_the_background_with_progress(tmp_path):
    """The real worker, driven by the job's timer as Slicer's QTimer drives it: start() returns
    at once, the progress arrives as events, the files are in place once it is done."""
    cache, events, finished, lines = tmp_path / "cache", [], [], []
    began = time.monotonic()
    job = samplecase.SampleCaseJob(cache, MODULE_DIR, sys.executable, timer=FakeTimer, on_progress=events.append,
                                   on_finished=finished.append, on_log=lines.extend).start()
    assert job.running() and time.monotonic() - began < 2 and isinstance(job.worker, process.WorkerProcess)
    assert job.worker.args == samplecase.generate_command(sys.executable, job.temp_dir)
    FakeTimer.last.run(limit_s=120)
    assert job.status == "done" and finished == [job], job.error
    assert [e["fraction"] for e in events] == [1.0] and any(line.startswith("wrote ") for line in lines)
    assert _registered_only(cache) and job.files == samplecase.cached_files(cache)
    assert all(sitk.ReadImage(str(path)).GetDimension() == 3 for path in job.files.values())


def test_a_cached_case_needs_no_worker(tmp_path):
    cache = tmp_path / "cache"
    files = samplecase.prepare_case(cache, sys.executable, MODULE_DIR)
    stamps = {m: p.stat().st_mtime_ns for m, p in files.items()}
    finished = []
    job = samplecase.SampleCaseJob(cache, MODULE_DIR, sys.executable, timer=FakeTimer,
                                   on_finished=finished.append).start()
    assert job.status == "done" and finished == [job] and job.worker is None and job.files == files
    assert {m: p.stat().st_mtime_ns for m, p in files.items()} == stamps  # not made again
    files["t2"].write_bytes(b"")  # an empty file counts as missing, as in Sample Data
    assert samplecase.missing_files(cache) == [files["t2"]]
    samplecase.prepare_case(cache, sys.executable, MODULE_DIR)
    assert samplecase.missing_files(cache) == [] and files["t2"].stat().st_size > 0 and _registered_only(cache)


def test_failures_are_one_message_and_leave_nothing_behind(tmp_path):
    cache = tmp_path / "cache"
    failing = _fake_worker(tmp_path / "failing", """
        import sys
        print("progress noise", file=sys.stderr)
        print("ciml sample-data: error: no space left on device", file=sys.stderr)
        sys.exit(2)
    """)
    finished = []
    job = samplecase.SampleCaseJob(cache, failing, sys.executable, timer=FakeTimer, on_finished=finished.append).start()
    FakeTimer.last.run()
    assert job.status == "failed" and finished == [job] and job.error == "no space left on device"
    assert job.outcome_text() == "Failed: no space left on device" and list(cache.iterdir()) == []
    with pytest.raises(samplecase.SampleCaseError, match="^no space left on device$"):
        samplecase.prepare_case(cache, sys.executable, failing)
    silent = _fake_worker(tmp_path / "silent", "print('done')")  # exits 0 but writes nothing
    with pytest.raises(samplecase.SampleCaseError, match="did not write"):
        samplecase.prepare_case(cache, sys.executable, silent)
    assert list(cache.iterdir()) == []
    with pytest.raises(samplecase.SampleCaseError, match="no-python"):  # a worker that cannot start
        samplecase.prepare_case(cache, str(tmp_path / "no-python"), MODULE_DIR)
    assert list(cache.iterdir()) == []
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(samplecase.SampleCaseError, match="cannot write the sample case into"):
        samplecase.prepare_case(blocked / "cache", sys.executable, MODULE_DIR)


SLOW = """
    import os, subprocess, sys, time
    out = sys.argv[sys.argv.index("--out") + 1]
    os.makedirs(os.path.join(out, "BraTS-sample-000"))
    open(os.path.join(out, "BraTS-sample-000", "BraTS-sample-000_t1.nii.gz"), "w").write("partial")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(os.name == "nt", reason="the process checks read /proc")
def test_cancel_ends_the_worker_tree_and_leaves_no_partial_file(tmp_path):
    cache, finished = tmp_path / "cache", []
    slow = _fake_worker(tmp_path / "slow", SLOW)
    job = samplecase.SampleCaseJob(cache, slow, sys.executable, timer=FakeTimer, on_finished=finished.append).start()
    deadline = time.monotonic() + 20
    while not job.worker.proc.stdout.closed and not job.worker._parser.noise and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.1)
    child = int(job.worker._parser.noise[0])  # the worker's child, printed on stdout
    job.cancel()
    assert job.status == "cancelled" and finished == [job] and job.outcome_text() == "Cancelled."
    assert not FakeTimer.last.active and list(cache.iterdir()) == []
    deadline = time.monotonic() + 10
    while (alive(job.worker.proc.pid) or alive(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(job.worker.proc.pid) and not alive(child)


@pytest.mark.skipif(os.name == "nt", reason="the process checks read /proc")
def test_waiting_has_a_time_limit_and_then_cancels(tmp_path):
    cache = tmp_path / "cache"
    slow = _fake_worker(tmp_path / "slow", SLOW)
    with pytest.raises(samplecase.SampleCaseError, match="within 1 s"):
        samplecase.prepare_case(cache, sys.executable, slow, timeout_s=1)
    assert list(cache.iterdir()) == []


def test_making_the_case_never_waits_on_a_process_in_slicers_thread():
    """The plain half runs the worker only through the job (no subprocess of its own), and the
    Sample Data button's glue starts the job with the poll timer instead of waiting for it."""
    plain = ast.parse((MODULE_DIR / "CIMLSegmentationLib" / "samplecase.py").read_text())
    imported = {a.name for n in ast.walk(plain) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert "subprocess" not in imported and issubclass(samplecase.SampleCaseJob, samplecase.BackgroundJob)
    glue = ast.parse((MODULE_DIR / "CIMLSegmentationLib" / "slicerglue" / "sampledata.py").read_text())
    button = next(n for n in glue.body if isinstance(n, ast.FunctionDef) and n.name == "_onSampleButton")
    calls = {ast.unparse(c.func) for c in ast.walk(button) if isinstance(c, ast.Call)}
    assert "samplecase.SampleCaseJob" in calls and "job.start" in calls
    assert not calls & {"loadSampleCase", "samplecase.prepare_case", "job.wait"}
    made = next(c for c in ast.walk(button) if isinstance(c, ast.Call) and ast.unparse(c.func) == "samplecase.SampleCaseJob")
    assert {k.arg: ast.unparse(k.value) for k in made.keywords}["timer"] == "pollTimer"
