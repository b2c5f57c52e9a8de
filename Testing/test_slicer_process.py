"""The background worker wrapper with real processes: progress lines, errors, cancel of the
whole process tree, temp-folder cleanup, and the commands the module builds."""

import os
import sys
import textwrap
import time

import pytest
import slicer_lib_helpers  # noqa: F401

from CIMLSegmentationLib import process, training


def _script(tmp_path, body):
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _alive(pid):
    """Running, and not a zombie waiting to be reaped by whoever adopted it."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


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
    assert _alive(worker.proc.pid) and _alive(grandchild)
    started = time.monotonic()
    worker.cancel()
    while (_alive(worker.proc.pid) or _alive(grandchild)) and time.monotonic() - started < 2:
        time.sleep(0.05)
    assert not _alive(worker.proc.pid) and not _alive(grandchild)
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
        "--max-steps", "50", "--progress", "json"]
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
