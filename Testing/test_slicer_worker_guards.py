"""The worker's guards, on real processes and plain values: the Windows creation flags (a
suspended launcher, so its Python is born inside the kill-on-close job), a cancel that returns
even when taskkill stalls, and no zombie left by a run's lifeline."""

import os
import subprocess
import sys
import time

import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)
from slicer_lib_helpers import alive

from CIMLSegmentationLib import process, winjob

# The values of winbase.h, written out here rather than read from the module under test.
SUSPENDED, NEW_GROUP, NO_WINDOW = 0x4, 0x200, 0x08000000


def test_the_worker_is_created_suspended_in_its_own_group_without_a_window():
    flags = winjob.windows_creation_flags()
    assert flags == SUSPENDED | NEW_GROUP | NO_WINDOW
    assert winjob.windows_creation_flags(suspended=False) == NEW_GROUP | NO_WINDOW
    if os.name == "nt":  # where subprocess knows them, the values agree with its own
        assert NEW_GROUP == subprocess.CREATE_NEW_PROCESS_GROUP and NO_WINDOW == subprocess.CREATE_NO_WINDOW


def test_every_worker_is_created_with_the_same_options_windows_included():
    """popen_options as values: on Windows the suspended flags without a console window (the
    sample case's worker too: no console pops up), elsewhere its own session."""
    assert process.popen_options(windows=True) == {"creationflags": SUSPENDED | NEW_GROUP | NO_WINDOW}
    assert process.popen_options(windows=False) == {"start_new_session": True}
    assert process.popen_options() == process.popen_options(windows=os.name == "nt")


def test_the_worker_starts_suspended_and_is_resumed_only_after_joining_the_job():
    """The order in WorkerProcess: Popen with the suspended flags, then the job, then resume; a
    job that cannot be made must still resume the launcher (read from the source, as this runs
    on POSIX)."""
    source = (slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib" / "process.py").read_text()
    start = source.index("def start(self)")
    assert "**popen_options())" in source[start:source.index("def _tie_to_parent")]
    tie = source[source.index("def _tie_to_parent"):source.index("def _release")]
    assert tie.index("kill_on_close_job(") < tie.index("finally:") < tie.index("resume_process(")


def test_kill_tree_returns_when_taskkill_stalls_and_ends_the_worker():
    """A taskkill that never returns is given up after the timeout, and the worker is ended
    with TerminateProcess (here: kill) instead of hanging the cancel."""
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stalled = [sys.executable, "-c", "import time; time.sleep(60)"]
    began = time.monotonic()
    process.kill_tree(worker, windows=True, taskkill=stalled, timeout_s=0.5)
    assert time.monotonic() - began < 10
    assert worker.poll() is not None and not alive(worker.pid)


def test_kill_tree_with_a_taskkill_that_does_its_work():
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killer = [sys.executable, "-c", f"import os, signal; os.kill({worker.pid}, signal.SIGKILL)"]
    process.kill_tree(worker, windows=True, taskkill=killer, timeout_s=5)
    assert worker.returncode is not None


def test_the_windows_tree_command_names_the_worker():
    assert process.taskkill_command(1234) == ["taskkill", "/F", "/T", "/PID", "1234"]


@pytest.mark.skipif(os.name == "nt", reason="the lifeline is POSIX; Windows uses a Job object")
@pytest.mark.parametrize("how", ["ends", "cancelled"])
def test_no_lifeline_is_left_a_zombie(how):
    worker = process.WorkerProcess([sys.executable, "-c", "import time; time.sleep(0.2 if %r == 'ends' else 60)"
                                    % how]).start()
    lifeline = worker.lifeline
    if how == "ends":
        assert worker.wait(timeout=20) == 0
    else:
        worker.cancel()
    # reaped by the worker itself: returncode is set without anyone else waiting on it
    assert lifeline.returncode is not None
    assert not alive(lifeline.pid)
