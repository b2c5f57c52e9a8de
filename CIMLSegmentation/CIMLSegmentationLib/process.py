"""The background worker: command lines, launch, non-blocking reading, cancel, errors.

Plain Python on ``subprocess.Popen`` so that it is tested here with real processes; a
``job.BackgroundJob`` polls ``WorkerProcess.poll()`` from a timer and never blocks the GUI. The
worker is started in its own session (POSIX) or process group (Windows) so that Cancel can end
the whole tree: a worker's data-loader children must not outlive it, holding GPU memory.

The worker also must not outlive Slicer when Slicer crashes or is killed. Inside Slicer the
worker is ``PythonSlicer``, a launcher that starts the real Python as its child, so a parent-death
signal set on it (Linux ``PR_SET_PDEATHSIG``) would reach the launcher only. Instead:

* POSIX (Linux, macOS): a *lifeline*, a tiny Python process that blocks reading a pipe whose
  only writer is Slicer. The kernel closes the pipe when Slicer dies, however it dies; the
  lifeline then ends the worker's whole process group. A worker that ends normally gets a byte
  on the pipe first, and the lifeline leaves quietly.
* Windows: the worker joins a Job object with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` whose only
  handle Slicer holds: Windows kills every process of the job (the launcher, Python and their
  children) when that handle closes, at Slicer's exit or crash. The launcher is created suspended
  (``windows_creation_flags``) and resumed only once it is in the job, so the real Python it
  starts cannot escape the job by starting first; a launcher that cannot be put in the job is
  still resumed (it runs, only without the crash guard).

Every process started here is waited on (the lifeline too, once released), so none is left a
zombie, and every wait on a kill has a timeout, so a stalled ``taskkill`` cannot hang a job.

Imports the standard library, ``progress`` and ``winjob`` only: ``ciml`` itself runs in the worker.
"""

import collections
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .progress import JsonLineParser
from .winjob import close_handle, kill_on_close_job, resume_process, windows_creation_flags

ERROR_LINE = re.compile(r"^ciml [\w-]+: error: (.+)$")
OOM_SIGNS = ("out of memory", "outofmemoryerror", "cuda_error_out_of_memory")

# Run as ``python -c LIFELINE <process group>`` with stdin a pipe from Slicer. Reading returns a
# byte when the worker ended normally, and end-of-file when Slicer is gone: then SIGTERM, a
# grace period, SIGKILL for the whole group.
LIFELINE = """
import os, signal, sys, time
group = int(sys.argv[1])
try:
    released = sys.stdin.buffer.read(1)
except OSError:
    released = b""
if not released:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except OSError:
            break
        time.sleep(1.0)
"""
TASKKILL_TIMEOUT_S = 10.0  # taskkill itself, then the wait for the worker: a stall ends in TerminateProcess
LIFELINE_EXIT_S = 2.0  # a released lifeline reads its byte and exits at once


def python_executable(executable: str = sys.executable) -> str:
    """Slicer's ``PythonSlicer`` next to the running executable (it sets up Slicer's Python
    environment), or the running Python itself outside Slicer."""
    folder = Path(executable).parent
    for name in ("PythonSlicer.exe", "PythonSlicer"):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    return executable


def device_label(device: str) -> str:
    """The panel's name for a ``--device`` choice of ``ciml.choices.DEVICES``."""
    return {"auto": "Auto", "cpu": "CPU", "cuda": "GPU (CUDA)"}.get(device, device)


SEGMENTING_TEXT = "Segmenting with {model} on {device}."  # the panel passes its translation


def segmenting_line(model_name: str, device: str, text: str = SEGMENTING_TEXT) -> str:
    """The Log box's first line of a run: the model and where it runs (``device_label``)."""
    return text.format(model=model_name, device=device_label(device))


def device_index(devices: Sequence[str], device) -> int:
    """The index of ``device`` in ``devices`` (the panel's combo order), or 0 ("auto") for a
    value that is not one of them: the parameter node's wrapper does not check a value it reads
    back, so a scene saved by another version may hold a stale one."""
    return list(devices).index(device) if device in devices else 0


def maps_option(effects: bool, gradcam: bool) -> str:
    """The worker's ``--maps``: effect maps (what withholding each modality changes, the source of
    the relations table), Grad-CAM heat maps, both, or none."""
    return {(True, False): "effects", (True, True): "all", (False, True): "gradcam"}.get((effects, gradcam), "none")


def segment_command(python: str, model: str, inputs: Dict[str, str], out_dir: str,
                    device: str = "auto", heat_maps: bool = True, fmt: str = "nrrd",
                    maps: Optional[str] = None) -> List[str]:
    """``python -m ciml segment ...`` for one case; inputs maps modality name to file path, for
    the given modalities only (the worker takes any subset with one input per sub-task). ``maps``
    (see ``maps_option``) is passed as ``--maps``; without it, ``heat_maps=False`` is ``--no-cam``
    and otherwise the worker's default (effect maps) applies."""
    args = [python, "-m", "ciml", "segment", "--model", str(model)]
    for name, path in inputs.items():
        args += ["--input", f"{name}={path}"]
    args += ["--out", str(out_dir), "--device", device, "--format", fmt, "--progress", "json"]
    if maps is not None:
        args += ["--maps", maps]
    elif not heat_maps:
        args.append("--no-cam")
    return args


def worker_environment(module_dir: str, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment with the module folder first on PYTHONPATH, so ``-m ciml`` finds the
    package shipped inside the module, and unbuffered output so progress arrives line by line."""
    env = dict(os.environ if base is None else base)
    paths = [str(module_dir)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def error_message(stderr_text: str, events: Sequence[Dict] = (), returncode: Optional[int] = None) -> str:
    """The one message to show: the worker's error event, else its 'ciml X: error:' line, else the
    last stderr line, else the exit code."""
    for event in reversed(list(events)):
        if event.get("event") == "error" and event.get("message"):
            return str(event["message"])
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = ERROR_LINE.match(line)
        if match:
            return match.group(1)
    if lines:
        return lines[-1]
    return f"the worker stopped with exit code {returncode}" if returncode else "the worker failed"


def popen_options(windows: bool = os.name == "nt") -> Dict[str, object]:
    """How every worker is created (segmentation, training, the sample case): on Windows with
    ``windows_creation_flags`` (its own process group, no console window, suspended until it is
    in the kill-on-close job); elsewhere in its own session, so that killpg reaches its children.

    Args:
        windows: take the Windows options; the default is the running system's.
    """
    if windows:
        return {"creationflags": windows_creation_flags(suspended=True)}
    return {"start_new_session": True}  # its own process group: killpg reaches every child


def is_out_of_memory(message: str) -> bool:
    """True when a failure was the GPU running out of memory (offer a rerun on the CPU)."""
    text = message.lower().replace(" ", "")
    return any(sign.replace(" ", "") in text for sign in OOM_SIGNS)


class WorkerProcess:
    """One run of the worker. ``poll()`` returns the new JSON events and never blocks;
    ``take_log()`` the stderr lines that arrived since it was last called."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None, temp_dir: Optional[str] = None,
                 lifeline_python: Optional[str] = None):
        self.args = list(args)
        self.env, self.cwd, self.temp_dir = env, cwd, temp_dir
        self.events: List[Dict] = []
        self.stderr_lines = collections.deque(maxlen=500)
        self._new_lines = collections.deque(maxlen=2000)  # bounded even if nobody takes them
        self.lifeline_python = lifeline_python or python_executable()
        self.lifeline: Optional[subprocess.Popen] = None
        self._job_handle = None
        self._released = False
        self.cancelled = False
        self.started_at: Optional[float] = None
        self._parser = JsonLineParser()
        self._chunks = collections.deque()
        self._threads: List[threading.Thread] = []
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "WorkerProcess":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                     text=True, encoding="utf-8", errors="replace", bufsize=1, **popen_options())
        self.started_at = time.monotonic()
        self._tie_to_parent()
        # Reader threads: pipes cannot be read without blocking on every platform, and a full
        # pipe would stall the worker.
        for stream, sink in ((self.proc.stdout, self._chunks.append), (self.proc.stderr, self._stderr_line)):
            thread = threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _tie_to_parent(self) -> None:
        """End the worker when this process ends, even by a crash (see the module docstring).
        Without it the worker still runs, so a failure here is a warning, not an error."""
        try:
            if os.name == "nt":
                try:
                    self._job_handle = kill_on_close_job(self.proc.pid)
                finally:  # in the job or not, the suspended launcher must run
                    resume_process(self.proc)
            else:
                self.lifeline = subprocess.Popen(
                    [self.lifeline_python, "-c", LIFELINE, str(self.proc.pid)], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except (OSError, ValueError) as exc:
            logging.warning("CIML Segmentation: the worker would outlive a crash of Slicer: %s", exc)

    def _release(self) -> None:
        """The worker has ended: let the lifeline go without killing, close the Job handle."""
        if self._released:
            return
        self._released = True
        if self.lifeline is not None:
            try:
                self.lifeline.stdin.write(b"x")
                self.lifeline.stdin.close()
            except OSError:  # the lifeline is already gone
                pass
            try:  # reap it: a lifeline never waited on stays a zombie until Slicer exits
                self.lifeline.wait(timeout=LIFELINE_EXIT_S)
            except subprocess.TimeoutExpired:
                logging.warning("CIML Segmentation: the worker's lifeline did not exit")
        if self._job_handle:
            close_handle(self._job_handle)
            self._job_handle = None

    def _stderr_line(self, line: str) -> None:
        self.stderr_lines.append(line)
        self._new_lines.append(line)

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in iter(stream.readline, ""):
            sink(line)
        stream.close()

    def take_log(self) -> List[str]:
        """The stderr lines (the worker's messages for people) since the last call, without
        their line ends; after the exit, up to the last one."""
        lines = []
        while self._new_lines:
            lines.append(self._new_lines.popleft().rstrip("\r\n"))
        return lines

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    @property
    def returncode(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> List[Dict]:
        """New events since the last call; after the exit, also the last partial line."""
        finished = not self.running()
        if finished:
            for thread in self._threads:
                thread.join(timeout=2)
            self._release()
        new: List[Dict] = []
        while self._chunks:
            new += self._parser.feed(self._chunks.popleft())
        if finished:
            new += self._parser.flush()
        self.events += new
        return new

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.poll()
        return self.proc.returncode

    @property
    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def succeeded(self) -> bool:
        return (not self.cancelled and self.returncode == 0
                and not any(e.get("event") == "error" for e in self.events))

    def error(self) -> str:
        if self.cancelled:
            return "Cancelled."
        return error_message(self.stderr_text, self.events, self.returncode)

    def cancel(self, grace_s: float = 0.5) -> None:
        """End the worker and all its children, then remove the temp folder."""
        self.cancelled = True
        if self.proc is not None and self.proc.poll() is None or self._group_alive():
            kill_tree(self.proc, grace_s)
        self._release()
        self.cleanup()

    def _group_alive(self) -> bool:
        if self.proc is None or os.name == "nt":
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except OSError:
            return False

    def cleanup(self) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def taskkill_command(pid: int) -> List[str]:
    """Windows: end ``pid`` and its tree (/T walks it by parent id; /F: the worker has no window)."""
    return ["taskkill", "/F", "/T", "/PID", str(pid)]


def kill_tree(proc: subprocess.Popen, grace_s: float = 0.5, windows: bool = os.name == "nt",
              taskkill: Optional[Sequence[str]] = None, timeout_s: float = TASKKILL_TIMEOUT_S) -> None:
    """Terminate a process started by WorkerProcess and every process of its group.

    Args:
        proc: the worker.
        grace_s: POSIX: how long SIGTERM has before SIGKILL.
        windows: take the Windows path (taskkill); the default is the running system's.
        taskkill: the tree-killing command (``taskkill_command(proc.pid)`` when None).
        timeout_s: Windows: how long taskkill, then the worker's exit, may take. A taskkill that
            stalls is killed itself and the worker ended with TerminateProcess (``proc.kill``),
            so a cancel always returns.
    """
    if windows:
        try:
            subprocess.run(list(taskkill or taskkill_command(proc.pid)), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:  # run() kills a taskkill that timed out
            logging.warning("CIML Segmentation: taskkill did not finish (%s); terminating the worker", exc)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()  # TerminateProcess: the launcher at least; the Job object holds the rest
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logging.warning("CIML Segmentation: the worker %s did not end", proc.pid)
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)  # pgid == pid: the worker leads its own session
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # the leader is gone; make sure no child of it survives SIGTERM
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        break
