"""One background worker run, the shape that segmentation and training share.

``start()`` prepares the run in a temporary folder (the subclass writes its inputs and builds
the command line), starts the worker and the poll timer. Each ``poll()`` hands the worker's new
stderr lines to ``on_log``, the job itself to ``on_tick`` (the panel's elapsed time: it can only
tick while the job's own timer runs, so it stops when the job ends, however it ends), and the
new progress events to ``on_progress``. Once the worker has exited, the subclass finishes the run
(imports the results, registers the bundle), ``_settle`` decides whether the folder must be
kept (a training run that wrote a bundle), the folder is otherwise removed, and
``on_finished(job)`` is called exactly once, as it is after a failed start or a ``cancel()``.
``wait()`` polls in a blocking loop instead (scripts, self-test, pytest).

``RunRecord`` is what the panel keeps of its runs apart from the parameter node, which the
widget drops whenever the user leaves the module or the scene closes while a run goes on; it
decides what the panel does when a run ends (``RunEnd``) and when the output reaches the
parameter node (``take_output``). The panel only carries the decisions out.

Its texts for the user are ``_("...")`` with the translation function the glue passes (see
``progress``). Plain Python: the timer comes from a factory the caller passes (a ``qt.QTimer`` in
Slicer; a stand-in or none at all in tests), so this is tested with pytest on real processes.
Imports only ``process`` and ``progress``; nothing from Slicer, torch or numpy.
"""

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from .process import WorkerProcess, python_executable, worker_environment
from .progress import Translate, untranslated

# (interval in ms, callback) -> an object with start() and stop(), e.g. a connected qt.QTimer
TimerFactory = Callable[[int, Callable[[], None]], object]
CALLBACKS = ("on_progress", "on_finished", "on_log", "on_tick")


class BackgroundJob:
    """A worker run with a status; subclasses define ``_prepare`` and may define ``_finish``."""

    TITLE = "CIML Segmentation"  # prefix of its log lines
    TEMP_PREFIX = "ciml-job-"
    POLL_MS = 200

    def __init__(self, module_dir: str, python: Optional[str] = None, timer: Optional[TimerFactory] = None,
                 on_progress: Optional[Callable[[Dict], None]] = None,
                 on_finished: Optional[Callable[["BackgroundJob"], None]] = None,
                 on_log: Optional[Callable[[List[str]], None]] = None,
                 on_tick: Optional[Callable[["BackgroundJob"], None]] = None):
        self.module_dir = str(module_dir)
        self.python = python or python_executable()
        self.on_progress, self.on_finished, self.on_log, self.on_tick = on_progress, on_finished, on_log, on_tick
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

    def _settle(self, folder: str) -> bool:
        """Once the run has ended, however (``status`` is set): True keeps ``folder``."""
        return False

    def _temp_parent(self) -> Optional[str]:
        """Where the run's folder is made (None: the system's temporary folder)."""
        return None

    def _log_progress(self, lines: List[str]) -> List[Dict]:
        """Progress events read from the worker's new stderr ``lines``, for a command that says
        how far it is there rather than in JSON lines on stdout (none by default)."""
        return []

    # --- driving ------------------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        if self.status != "new":
            raise RuntimeError(f"a job starts once; this one is {self.status}")
        try:
            self.temp_dir = tempfile.mkdtemp(prefix=self.TEMP_PREFIX, dir=self._temp_parent())
            args = self._prepare(self.temp_dir)
            logging.info("%s: %s", self.TITLE, " ".join(args))
            # The job, not the worker, removes the folder: _settle may keep it.
            self.worker = WorkerProcess(args, env=worker_environment(self.module_dir)).start()
        except Exception as exc:  # unusable inputs or a worker that cannot start: one message
            self._end("failed", str(exc))
            return self
        self.status = "running"
        if self._timer is not None:
            self._timer.start()
        return self

    def running(self) -> bool:
        return self.status == "running"

    def poll(self) -> None:
        """Hand on the new log lines, a tick and the new progress events; finish the run once
        the worker has exited."""
        if self._polling or not self.running():  # a callback that spins the event loop re-enters
            return
        self._polling = True
        try:
            exited = not self.worker.running()  # checked first, so this poll reads the last events
            events = self.worker.poll()
            lines = self.worker.take_log()
            events += self._log_progress(lines)
            if lines:
                self._call(self.on_log, lines)
            if self.running():  # a callback may have cancelled the job
                self._call(self.on_tick, self)
            for event in events:
                if not self.running():  # a callback cancelled the job
                    break
                self._call(self.on_progress, event)
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
        """End the worker and all its children, remove the folder (unless ``_settle`` keeps it)."""
        if self.running():
            self.worker.cancel()
            self._end("cancelled", "Cancelled.")

    def detach(self) -> None:
        """No more callbacks (the panel that set them is going away)."""
        for name in CALLBACKS:
            setattr(self, name, None)

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

    def outcome_text(self, _: Translate = untranslated) -> str:
        """The status line once the run has ended, in the language of ``_`` (the translation
        function: ``slicer.i18n.tr`` in Slicer)."""
        if self.status == "done":
            return _("Done.")
        if self.status == "cancelled":
            return _("Cancelled.")
        return _("Failed: {error}").format(error=self.error)

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
        self._end(status, error)

    def _end(self, status: str, error: str) -> None:
        self.status, self.error = status, error
        if self._timer is not None:
            self._timer.stop()
        keep = False
        if self.temp_dir:
            try:
                keep = self._settle(self.temp_dir)
            except Exception:  # deciding must not lose the folder or the finished callback
                logging.exception("%s: settling the run folder failed", self.TITLE)
                keep = True
        if not keep:
            self.cleanup()
        self._call(self.on_finished, self)

    def _call(self, callback, argument) -> None:
        # A failing callback is logged and must not leave the job half-finished or its timer firing.
        if callback is None:
            return
        try:
            callback(argument)
        except Exception:
            logging.exception("%s: a %s callback failed", self.TITLE, type(self).__name__)


def done_line(notes: Sequence[str] = (), _: Translate = untranslated) -> str:
    """The status line of a run that succeeded, with how many ``notes`` it left, if any, in the
    language of ``_`` (the translation function)."""
    return _("Done. {count} note(s) in the log.").format(count=len(notes)) if notes else _("Done.")


@dataclass
class RunEnd:
    """What the panel does once a segmentation run has ended, in this order.

    Args:
        status_line: the status label's text, and the Log box's last line.
        notes: the run's notes for the Log box (a successful run's only).
        show_results: fill the relations table, the map list and "Segment again without...",
            then hand the output to the parameter node (``RunRecord.take_output``).
        offer_cpu_rerun: the GPU ran out of memory: ask whether to run again on the CPU.
        error: a failure to show in a dialog, with the worker's log; '' for none (a success, a
            cancel, or an out-of-memory failure, which asks instead).
    """

    status_line: str
    notes: List[str] = field(default_factory=list)
    show_results: bool = False
    offer_cpu_rerun: bool = False
    error: str = ""


class RunRecord:
    """What the panel keeps of one kind of run, apart from the parameter node.

    The widget drops its parameter node whenever the user leaves the module or the scene closes,
    while a run goes on. The job's finish callback therefore records the run here (``end``) and
    never writes the parameter node itself; ``take_output`` hands a finished run's output over to
    the parameter node once the panel has one (at once when the module is shown, else on its
    return), and only once.
    """

    def __init__(self):
        self.job: Optional[BackgroundJob] = None  # the job that runs, or the last that ended
        self._untaken: Optional[BackgroundJob] = None

    def running(self) -> bool:
        return self.job is not None and self.job.running()

    def finished(self, job: BackgroundJob) -> None:
        """Remember ``job``, which has ended; a successful one awaits ``take_result``."""
        self.job = job
        self._untaken = job if job.status == "done" else None

    def end(self, job: BackgroundJob, notes: Sequence[str] = (), out_of_memory: bool = False,
            _: Translate = untranslated) -> RunEnd:
        """From the job's ``on_finished``: record ``job`` and decide what the panel shows.

        Args:
            job: the run that has just ended (done, failed or cancelled).
            notes: its notes (a segmentation's resampling notes and report warnings).
            out_of_memory: it failed because the GPU ran out of memory (a CPU rerun may succeed).
            _: the translation function of the status line (``slicer.i18n.tr`` in Slicer).
        """
        self.finished(job)
        done, failed = job.status == "done", job.status == "failed"
        return RunEnd(status_line=done_line(notes, _) if done else job.outcome_text(_),
                      notes=list(notes) if done else [], show_results=done,
                      offer_cpu_rerun=failed and out_of_memory,
                      error=job.error if failed and not out_of_memory else "")

    def take_result(self, connected: bool) -> Optional[BackgroundJob]:
        """The finished run whose result the parameter node has not taken yet, once; None while
        not ``connected`` (the panel has no parameter node)."""
        if not connected or self._untaken is None:
            return None
        job, self._untaken = self._untaken, None
        return job

    def take_output(self, connected: bool, in_scene: Callable[[object], bool]) -> Optional[object]:
        """The output (``job.segmentation``) of the run ``take_result`` hands over, if it is still
        ``in_scene`` (the user may have deleted it meanwhile); else None.

        Args:
            connected: the panel has a parameter node.
            in_scene: whether a node is still in the scene (in Slicer: ``node.GetScene()``).
        """
        job = self.take_result(connected)
        output = getattr(job, "segmentation", None)
        return output if output is not None and in_scene(output) else None

    def forget(self) -> None:
        """The scene closes: cancel a run (its nodes go with the scene), forget the last one."""
        if self.running():
            self.job.cancel()
        self.job = self._untaken = None
