"""The runs of the Slicer module, outside Slicer, with real processes: what the panel does when a
run ends (``job.RunRecord``, which the widget calls: the output of a run that finishes while the
module is not shown, notes, failures, out of memory, scene close), the elapsed time and log
driven by the job, the saved bundle folders read back from an INI file, paths compared as Windows
compares them, the export plan for inputs under a transform, and a worker that dies with the
process that started it."""

import ast
import ctypes
import ntpath
import os
import posixpath
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import slicer_lib_helpers
from slicer_lib_helpers import FakeTimer, alive

from CIMLSegmentationLib import geometry, job, models, process, winjob

MODULE_DIR = slicer_lib_helpers.MODULE_DIR
SAMPLE_BUNDLE = slicer_lib_helpers.SAMPLE_BUNDLE


def _wait_dead(pids, limit_s=10.0):
    deadline = time.monotonic() + limit_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


class OutputJob(job.BackgroundJob):
    """A segmentation-shaped job: its worker writes out.txt, which ``_finish`` takes as the output
    (in Slicer the job adds the segmentation node to the scene itself)."""

    POLL_MS = 20

    def __init__(self, body, **callbacks):
        super().__init__(str(MODULE_DIR), python=sys.executable, **callbacks)
        self.body, self.segmentation = body, None

    def _prepare(self, folder):
        if self.body is None:
            raise ValueError("t2: the volume has no image data.")
        script = Path(folder) / "worker.py"
        script.write_text(textwrap.dedent(self.body))
        return [self.python, str(script), folder]

    def _finish(self, folder):
        self.segmentation = (Path(folder) / "out.txt").read_text()


WORKER = """
    import os, sys, time
    for i in range(3):
        print(f"message {i}", file=sys.stderr, flush=True)
        print('{"event": "progress", "stage": "infer", "fraction": %s}' % ((i + 1) / 4), flush=True)
        time.sleep(0.1)
    open(os.path.join(sys.argv[1], "out.txt"), "w").write("segmentation node")
    print('{"event": "done"}')
"""
SLOW_WORKER = """
    import time
    print('{"event": "progress", "stage": "infer", "fraction": 0.1}', flush=True)
    time.sleep(60)
"""


FAILING_WORKER = """
    import sys
    print("ciml segment: error: t2: the image holds NaN voxels", file=sys.stderr)
    sys.exit(2)
"""
OOM_WORKER = """
    import sys
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(3)
"""


def _run(record, body, ends, **end_args):
    """Start a run whose ``on_finished`` is what the panel's is: ``RunRecord.end``, whose decision
    is kept in ``ends``."""
    record.job = OutputJob(body, timer=FakeTimer, on_finished=lambda run: ends.append(record.end(run, **end_args)))
    return record.job.start()


def in_scene(node):
    return node != "deleted"


# --- a run finishes whatever module is shown: the panel's decisions (job.RunRecord) ---------------

def test_a_run_finishes_while_the_module_is_not_shown_and_its_output_is_taken_on_return():
    record, ends = job.RunRecord(), []
    run = _run(record, WORKER, ends)
    FakeTimer.last.run()  # meanwhile the user has opened another module: the panel has no parameter node
    assert run.status == "done" and run.segmentation == "segmentation node"
    assert ends == [job.RunEnd("Done.", [], show_results=True)]
    assert record.take_output(False, in_scene) is None  # nothing handed over while not shown
    assert record.take_output(True, in_scene) == "segmentation node"  # the user comes back
    assert record.take_output(True, in_scene) is None  # handed over once: a later choice stays


def test_an_output_deleted_before_the_panel_takes_it_is_not_handed_over():
    record, ends = job.RunRecord(), []
    run = _run(record, WORKER, ends)
    FakeTimer.last.run()
    run.segmentation = "deleted"  # the user deleted the segmentation while in another module
    assert record.take_output(True, in_scene) is None and record.take_output(True, lambda node: True) is None


def test_a_run_with_notes_says_how_many_in_the_panels_words():
    record, ends = job.RunRecord(), []
    _run(record, WORKER, ends, notes=["t2 resampled onto the grid of t1ce", "WT: small"])
    FakeTimer.last.run()
    assert ends[-1] == job.RunEnd("Done. 2 note(s) in the log.", ["t2 resampled onto the grid of t1ce", "WT: small"],
                                  show_results=True)
    german = {"Done. {count} note(s) in the log.": "Fertig. {count} Hinweis(e) im Protokoll."}
    _run(record, WORKER, ends, notes=["one"], _=lambda text: german.get(text, text))
    FakeTimer.last.run()
    assert ends[-1].status_line == "Fertig. 1 Hinweis(e) im Protokoll."


def test_a_failed_run_shows_its_error_and_leaves_the_output_alone():
    record, ends = job.RunRecord(), []
    run = _run(record, FAILING_WORKER, ends, notes=["not shown for a failure"])
    FakeTimer.last.run()
    assert run.status == "failed"
    assert ends == [job.RunEnd("Failed: t2: the image holds NaN voxels", [], show_results=False,
                               offer_cpu_rerun=False, error="t2: the image holds NaN voxels")]
    assert record.take_output(True, in_scene) is None and record.job is run


def test_a_gpu_out_of_memory_failure_offers_the_cpu_instead_of_an_error():
    record, ends = job.RunRecord(), []
    run = _run(record, OOM_WORKER, ends, out_of_memory=True)
    FakeTimer.last.run()
    assert run.status == "failed" and process.is_out_of_memory(run.error)  # as SegmentationJob.outOfMemory reads it
    assert ends[-1].offer_cpu_rerun and ends[-1].error == "" and not ends[-1].show_results
    assert ends[-1].status_line == "Failed: " + run.error
    # a success never offers the CPU, whatever the flag says
    _run(record, WORKER, ends, out_of_memory=True)
    FakeTimer.last.run()
    assert not ends[-1].offer_cpu_rerun and ends[-1].show_results


@pytest.mark.skipif(os.name == "nt", reason="the process checks read /proc")
def test_scene_close_cancels_the_run_and_leaves_nothing_to_take():
    record, ends = job.RunRecord(), []
    run = _run(record, SLOW_WORKER, ends)
    run.poll()
    record.forget()  # StartCloseEvent: the widget drops the parameter node, the panel forgets its runs
    assert run.status == "cancelled" and ends == [job.RunEnd("Cancelled.")] and not FakeTimer.last.active
    assert _wait_dead([run.worker.proc.pid]) == [] and not Path(run.temp_dir).exists()
    assert record.job is None and record.take_output(True, in_scene) is None


def _method(name):
    tree = ast.parse((MODULE_DIR / "CIMLSegmentationLib" / "slicerglue" / "widget.py").read_text())
    panel = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Panel")
    return next(n for n in panel.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_the_panel_carries_out_the_records_decisions_and_makes_none_of_its_own():
    """The widget's takeRunResult and onFinished hand the run to the RunRecord tested above; a
    decision on the job's status back in the widget fails here."""
    calls = lambda node: {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}  # noqa: E731
    finished, take = _method("onFinished"), _method("takeRunResult")
    assert "self.runs.end" in calls(finished) and "self.takeRunResult" in calls(finished)
    assert "self.runs.take_output" in calls(take) and "self.takeRunResult" in calls(_method("setParameterNode"))
    for method in (finished, take):
        source = ast.unparse(method)
        assert "job.status" not in source and "take_result" not in source and "runs.finished" not in source
    # every branch of onFinished follows a decision of RunRecord.end, in the order RunEnd gives
    conditions = [ast.unparse(n.test) for n in ast.walk(finished) if isinstance(n, ast.If)]
    assert [c.split(" and ")[0] for c in conditions] == ["end.show_results", "end.offer_cpu_rerun", "end.error"]


# --- the elapsed time and the log: driven by the job's own timer ------------------------------

def test_elapsed_time_and_log_lines_come_from_the_job_and_stop_with_it():
    ticks, lines, events = [], [], []
    run = OutputJob(WORKER, timer=FakeTimer, on_tick=lambda j: ticks.append(j.elapsed), on_log=lines.extend,
                    on_progress=events.append).start()
    FakeTimer.last.run()
    assert run.status == "done" and len(ticks) >= 3 and ticks == sorted(ticks) and ticks[-1] > 0
    assert lines == ["message 0", "message 1", "message 2"]  # each once, in order, without line ends
    count = len(ticks)
    run.poll(), run.wait()
    assert len(ticks) == count  # the run has ended: nothing ticks any more


def test_a_run_that_cannot_start_never_ticks():
    ticks, finished = [], []
    run = OutputJob(None, timer=FakeTimer, on_tick=ticks.append, on_finished=finished.append).start()
    assert finished == [run] and run.status == "failed" and run.error == "t2: the volume has no image data."
    assert not FakeTimer.last.active and ticks == [] and not Path(run.temp_dir).exists()


def test_detached_job_calls_nothing():
    called = []
    run = OutputJob(WORKER, on_tick=called.append, on_log=called.append, on_finished=called.append,
                    on_progress=called.append).start()
    run.detach()
    run.wait(timeout=20)
    assert run.status == "done" and called == []


# --- the saved bundle folders from Slicer's INI settings --------------------------------------

@pytest.mark.parametrize("saved, expected", [
    (None, []),
    ("", []),
    ("/data/bundles/brats", ["/data/bundles/brats"]),  # a one-element list, read back from the INI
    (["/data/bundles/brats"], ["/data/bundles/brats"]),
    (("/a", "/b"), ["/a", "/b"]),
    (["/a", "", "  ", None, 3, "/a/", "/b"], ["/a", "/b"]),
    (42, []),
])
def test_saved_folders_are_a_list_whatever_the_settings_return(saved, expected):
    assert models.folder_list(saved, posixpath) == expected


def test_adding_a_folder_to_what_the_settings_returned():
    assert models.add_folder("/data/b1", "/data/b2", posixpath) == ["/data/b1", "/data/b2"]
    assert models.add_folder(None, "/data/b1", posixpath) == ["/data/b1"]
    assert models.add_folder(["/data/b1"], "/data/b1/", posixpath) == ["/data/b1"]  # no duplicate
    assert models.add_folder("C:\\Bundles\\b1", "c:/bundles/B1", ntpath) == ["C:\\Bundles\\b1"]


# --- Windows paths: one folder, several spellings ---------------------------------------------

def test_paths_compare_as_windows_compares_them():
    assert models.path_key("C:/Models/brats", ntpath) == models.path_key("c:\\models\\BRATS\\", ntpath)
    assert models.path_key("C:/Models/x/../brats", ntpath) == models.path_key("C:\\Models\\brats", ntpath)
    assert models.path_key("/Models/brats", posixpath) != models.path_key("/models/brats", posixpath)
    assert models.path_key("/m/brats/", posixpath) == models.path_key("/m//brats", posixpath)
    paths = ["C:\\Slicer\\CIMLSegmentation\\models\\brats-sample", "D:\\bundles\\mine"]
    assert models.model_index(paths, "D:/bundles/mine", ntpath) == 1  # what Qt's file dialog answers
    assert models.model_index(paths, "d:\\Bundles\\Mine\\", ntpath) == 1
    assert models.model_index(paths, "D:/bundles/other", ntpath) == -1
    assert models.model_index(paths, "", ntpath) == -1


def test_find_models_lists_a_folder_saved_under_two_spellings_once(tmp_path):
    found, problems = models.find_models([], None, f"{SAMPLE_BUNDLE}")  # a plain string from settings
    assert [m.path for m in found] == [str(SAMPLE_BUNDLE)] and problems == []
    found, _ = models.find_models([], None, [str(SAMPLE_BUNDLE), str(SAMPLE_BUNDLE) + os.sep])
    assert len(found) == 1
    assert models.model_index([m.path for m in found], str(SAMPLE_BUNDLE) + "/") == 0


# --- export: inputs under a parent transform --------------------------------------------------

def _grid(origin=(0, 0, 0), spacing=(1, 1, 1), dims=(240, 240, 155)):
    return geometry.geometry(origin, spacing, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], dims)


def test_export_plan_hardens_transformed_inputs_and_resamples_on_world_grids():
    names = {"t1ce": "case_t1ce", "flair": "case_flair", "t2": "case_t2"}
    # flair is under a registration transform; hardened, its world grid is the reference's.
    resample, notes = geometry.export_plan("t1ce", names, {"t1ce": _grid(), "flair": _grid(), "t2": _grid()},
                                           {"t1ce": "", "flair": "flair to t1ce", "t2": ""})
    assert resample == {"t1ce": False, "flair": False, "t2": False}
    assert notes == ["flair ('case_flair') is under the transform 'flair to t1ce': the segmentation used a copy "
                     "with that transform hardened, as the views show it."]
    # the reference itself moved: every other input is resampled onto its world grid
    resample, notes = geometry.export_plan("t1ce", names, {"t1ce": _grid(origin=(10, 0, 0)), "flair": _grid(),
                                                           "t2": _grid()}, {"t1ce": "shift", "flair": "", "t2": ""})
    assert resample == {"t1ce": False, "flair": True, "t2": True}
    assert len(notes) == 3 and "resampled onto the grid of t1ce ('case_t1ce')" in notes[1]


# --- the worker's life is tied to the process that started it ---------------------------------

PARENT = """
import sys, time
sys.path.insert(0, {module_dir!r})
from CIMLSegmentationLib.process import WorkerProcess
# The worker as inside Slicer: a launcher (PythonSlicer) that starts the real Python as its child.
worker = WorkerProcess([sys.executable, {launcher!r}, sys.executable, {worker!r}, {pids!r}]).start()
print(worker.proc.pid, worker.lifeline.pid, flush=True)
time.sleep(120)
"""
LAUNCHER = """
import subprocess, sys
sys.exit(subprocess.call(sys.argv[1:]))
"""
TREE_WORKER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {child.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes through /proc")
def test_killing_the_parent_kills_the_worker_its_launcher_and_children(tmp_path):
    for name, text in (("launcher.py", LAUNCHER), ("worker.py", TREE_WORKER)):
        (tmp_path / name).write_text(text)
    pids_file = tmp_path / "pids"
    parent_script = PARENT.format(module_dir=str(MODULE_DIR), launcher=str(tmp_path / "launcher.py"),
                                  worker=str(tmp_path / "worker.py"), pids=str(pids_file))
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        launcher, lifeline = map(int, parent.stdout.readline().split())
        pids = [launcher, lifeline]
        deadline = time.monotonic() + 20
        while not pids_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker, child = map(int, pids_file.read_text().split())
        pids += [worker, child]
        time.sleep(0.5)
        assert all(alive(p) for p in pids)  # the lifeline leaves a living parent's worker alone
        parent.kill()  # SIGKILL: Slicer crashing gets no chance to clean up either
        parent.wait()
        assert _wait_dead(pids) == []
    finally:
        for pid in pids:  # never leave a stray process behind, whatever failed above
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(os.name == "nt", reason="the lifeline is POSIX; Windows uses a Job object")
def test_a_worker_that_ends_lets_its_lifeline_go():
    worker = process.WorkerProcess([sys.executable, "-c", "import time; time.sleep(0.3); print('bye')"]).start()
    assert worker.lifeline is not None and worker.lifeline.poll() is None
    assert worker.wait(timeout=20) == 0 and worker.succeeded()
    assert worker.lifeline.wait(timeout=20) == 0


@pytest.mark.skipif(os.name == "nt", reason="the lifeline is POSIX; Windows uses a Job object")
def test_a_cancelled_worker_lets_its_lifeline_go():
    worker = process.WorkerProcess([sys.executable, "-c", "import time; time.sleep(60)"]).start()
    worker.cancel()
    assert not alive(worker.proc.pid) and worker.lifeline.wait(timeout=20) == 0


def test_the_windows_job_limits_have_the_sdk_layout():
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows (112 on 32-bit)."""
    assert ctypes.sizeof(winjob._ExtendedLimits) == (144 if ctypes.sizeof(ctypes.c_void_p) == 8 else 112)
