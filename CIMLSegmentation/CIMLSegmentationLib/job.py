"""One background worker run, the shape that segmentation and training share.

``start()`` prepares the run in a temporary folder (the subclass writes its inputs and builds
the command line), starts the worker and the poll timer. Each ``poll()`` hands the worker's new
progress events to ``onProgress``; once the worker has exited, the subclass finishes the run
(imports the results, registers the bundle), the temporary folder is removed, and
``onFinished(job)`` is called exactly once, as it is after a failed start or a ``cancel()``.
``wait()`` polls in a blocking loop instead (scripts, self-test, pytest).

Plain Python: the timer comes from a factory the caller passes (a ``qt.QTimer`` in Slicer; a
stand-in or none at all in tests), so this is tested with pytest on real processes. Imports
only ``process``; nothing from Slicer, torch or numpy.
"""

import logging
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional

from .process import WorkerProcess, python_executable, worker_environment

# (interval in ms, callback) -> an object with start() and stop(), e.g. a connected qt.QTimer
TimerFactory = Callable[[int, Callable[[], None]], object]


class BackgroundJob:
    """A worker run with a status; subclasses define ``_prepare`` and may define ``_finish``."""

    TITLE = "CIML Segmentation"  # prefix of its log lines
    TEMP_PREFIX = "ciml-job-"
    POLL_MS = 200

    def __init__(self, module_dir: str, python: Optional[str] = None, timer: Optional[TimerFactory] = None,
                 onProgress: Optional[Callable[[Dict], None]] = None,
                 onFinished: Optional[Callable[["BackgroundJob"], None]] = None):
        self.module_dir = str(module_dir)
        self.python = python or python_executable()
        self.onProgress, self.onFinished = onProgress, onFinished
        self.status = "new"  # then running, and at the end done, failed or cancelled
        self.error = ""
        self.temp_dir = ""
        self.worker: Optional[WorkerProcess] = None
        self._timer = timer(self.POLL_MS, self.poll) if timer else None
        self._polling = False

    # --- what a subclass specialises ----------------------------------------------------------
    def _prepare(self, folder: str) -> List[str]:
        """Write the inputs into ``folder``; return the worker's command line."""
        raise NotImplementedError

    def _finish(self, folder: str) -> None:
        """After a successful exit, before ``folder`` is removed: take the outputs from it."""

    def _finish_error(self, exc: Exception) -> str:
        """The message when ``_finish`` raised."""
        return str(exc)

    # --- driving ------------------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        if self.status != "new":
            raise RuntimeError(f"a job starts once; this one is {self.status}")
        self.temp_dir = tempfile.mkdtemp(prefix=self.TEMP_PREFIX)
        try:
            args = self._prepare(self.temp_dir)
            logging.info("%s: %s", self.TITLE, " ".join(args))
            self.worker = WorkerProcess(args, env=worker_environment(self.module_dir), temp_dir=self.temp_dir).start()
        except Exception as exc:  # unusable inputs or a worker that cannot start: one message
            self.cleanup()
            self._end("failed", str(exc))
            return self
        self.status = "running"
        if self._timer is not None:
            self._timer.start()
        return self

    def running(self) -> bool:
        return self.status == "running"

    def poll(self) -> None:
        """Hand on the new progress events; finish the run once the worker has exited."""
        if self._polling or not self.running():  # a callback that spins the event loop re-enters
            return
        self._polling = True
        try:
            exited = not self.worker.running()  # checked first, so this poll reads the last events
            for event in self.worker.poll():
                if not self.running():  # a progress callback cancelled the job
                    break
                self._call(self.onProgress, event)
            if exited and self.running():
                self._finish_run()
        finally:
            self._polling = False

    def wait(self, timeout: Optional[float] = None) -> "BackgroundJob":
        """Poll until the run has ended (or ``timeout`` seconds have passed)."""
        if self._polling and self.running():
            raise RuntimeError("wait() from a job's own callback would never return")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running():
            self.poll()
            if not self.running() or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.POLL_MS / 1000)
        return self

    def cancel(self) -> None:
        """End the worker and all its children, remove the temporary folder."""
        if self.running():
            self.worker.cancel()
            self._end("cancelled", "Cancelled.")

    def cleanup(self) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    # --- what the panel shows -----------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.worker.elapsed if self.worker is not None else 0.0

    @property
    def log(self) -> str:
        """The worker's stderr (its last lines), for a failure's details."""
        return self.worker.stderr_text if self.worker is not None else ""

    def outcome_text(self) -> str:
        """The status line once the run has ended."""
        if self.status == "done":
            return "Done."
        if self.status == "cancelled":
            return "Cancelled."
        return "Failed: " + self.error

    # --- internals ----------------------------------------------------------------------------
    def _finish_run(self) -> None:
        try:
            if self.worker.succeeded():
                self._finish(self.temp_dir)
                status, error = "done", ""
            else:
                status, error = "failed", self.worker.error()
        except Exception as exc:  # an output that cannot be taken: one message, not a traceback
            logging.exception("%s: finishing the run failed", self.TITLE)
            status, error = "failed", self._finish_error(exc)
        finally:
            if self.worker.stderr_text:
                logging.info("%s worker log:\n%s", self.TITLE, self.worker.stderr_text)
            self.worker.cleanup()
        self._end(status, error)

    def _end(self, status: str, error: str) -> None:
        self.status, self.error = status, error
        if self._timer is not None:
            self._timer.stop()
        self._call(self.onFinished, self)

    def _call(self, callback, argument) -> None:
        # A failing callback is logged and must not leave the job half-finished or its timer firing.
        if callback is None:
            return
        try:
            callback(argument)
        except Exception:
            logging.exception("%s: a %s callback failed", self.TITLE, type(self).__name__)
