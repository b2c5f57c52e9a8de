"""Fine-tuning from the GUI: ``ciml train`` as a background job, like a segmentation.

Plain Python (tested with pytest on real processes), importing only ``job`` and ``models``:
``TrainingJob`` runs the worker in a run folder, and on success copies the new bundle
(``RUN/bundle``) into the user's models folder so the Model list shows it.

A bundle the worker wrote is never deleted. The run folder lives beside the models folder (not
in the system's temporary folder, which may be cleaned), and when a run fails or is cancelled
after writing a bundle (the latest validated weights: ``--bundle last``), the folder is kept and the bundle, when
complete, is registered too; ``outcome_text`` says where both are. Texts for the user are
``_("...")`` with the translation function the glue passes (see ``progress``).
"""

import datetime
import re
from pathlib import Path
from typing import List, Optional, Tuple

from .job import BackgroundJob, TimerFactory
from .models import ModelError, ModelInfo, read_model, register_bundle
from .progress import Translate, untranslated

RUNS_FOLDER = "training-runs"  # beside the models folder
# What `ciml train` writes to stderr after each validation (ciml.training.trainer._validate).
VALIDATION_LINE = re.compile(r"^step (\d+): validation Dice (.+)$")


def fine_tuned_name(base_name: str, day: datetime.date) -> str:
    """The registered name of a model fine-tuned from ``base_name`` on ``day``:
    'brats-sample-finetuned-2025-03-14' (the models folder adds -2, -3 to a second one)."""
    return f"{base_name}-finetuned-{day.isoformat()}"


def validation_dice(line: str) -> Optional[Tuple[int, str]]:
    """(step, 'WT 0.812, TC 0.640, ET 0.555') from a validation line of the worker's log, else None."""
    match = VALIDATION_LINE.match(line.strip())
    return (int(match.group(1)), match.group(2)) if match else None


def train_command(python: str, data_dir: str, run_dir: str, init: Optional[str] = None,
                  max_steps: Optional[int] = None, max_minutes: Optional[float] = None) -> List[str]:
    """``python -m ciml train ...`` into ``run_dir``.

    Args:
        python: the worker's Python.
        data_dir: the dataset folder.
        run_dir: the run folder (``RUN/bundle`` is the result).
        init: the bundle to fine-tune from.
        max_steps: optimiser steps; None: the card's ``training.max_steps``, or, with
            ``max_minutes``, the time limit alone.
        max_minutes: the wall-clock limit (``--max-minutes``): then the worker stops after the
            current step, validates and keeps the last weights; None: no limit.
    """
    args = [python, "-m", "ciml", "train", "--data", str(data_dir), "--out", str(run_dir)]
    if init:
        args += ["--init", str(init)]
    if max_steps:
        args += ["--max-steps", str(int(max_steps))]
    args += ["--bundle", "last"]  # a few cases validate too few to choose by (docs/real-scans.md)
    if max_minutes:
        args += ["--max-minutes", repr(float(max_minutes))]
    return args + ["--progress", "json"]


def train_disabled_reason(data_dir: str, _: Translate = untranslated) -> str:
    """Why Train cannot run now ('' when it can), in the language of ``_`` (the translation
    function). While training runs the button is Cancel, which the panel decides."""
    if not data_dir:
        return _("Choose a dataset folder.")
    if not Path(data_dir).is_dir():
        return _("The dataset folder does not exist: {folder}").format(folder=data_dir)
    return ""


def bundle_written(run_dir) -> bool:
    """True when the worker has written a bundle into ``run_dir``, even one caught while it was
    being replaced by a better one (the core moves the old one aside as ``.bundle.old-PID``)."""
    run = Path(run_dir)
    return (run / "bundle").is_dir() or any(run.glob(".bundle.old-*"))


class TrainingJob(BackgroundJob):
    """One training run; ``model`` is the bundle registered in ``models_dir`` (on success, or
    the last bundle of a run that failed or was cancelled), ``kept`` a run folder kept for it."""

    TITLE = "CIML Segmentation training"
    TEMP_PREFIX = "ciml-train-"
    POLL_MS = 500

    def __init__(self, module_dir: str, data_dir: str, models_dir: str, init: Optional[str] = None,
                 max_steps: Optional[int] = None, python: Optional[str] = None,
                 timer: Optional[TimerFactory] = None, name: Optional[str] = None,
                 max_minutes: Optional[float] = None, **callbacks):
        super().__init__(module_dir, python, timer, **callbacks)
        self.data_dir, self.models_dir = str(data_dir), str(models_dir)
        self.init, self.max_steps, self.max_minutes = init, max_steps, max_minutes
        self.name = name  # the registered folder's name (``fine_tuned_name``); None: the card's
        self.model: Optional[ModelInfo] = None
        self.kept = ""  # the run folder kept because it holds a bundle
        self.kept_problem = ""  # why that bundle was not registered

    def _temp_parent(self) -> str:
        runs = Path(self.models_dir).parent / RUNS_FOLDER
        runs.mkdir(parents=True, exist_ok=True)
        return str(runs)

    def _prepare(self, folder: str) -> List[str]:
        return train_command(self.python, self.data_dir, str(Path(folder) / "run"), self.init, self.max_steps,
                             self.max_minutes)

    def _finish(self, folder: str) -> None:
        self._register(Path(folder) / "run" / "bundle")

    def _register(self, bundle: Path) -> None:
        target = register_bundle(bundle, self.models_dir, self.name)
        self.model = read_model(target, origin="models folder")

    def _settle(self, folder: str) -> bool:
        run = Path(folder) / "run"
        if self.status == "done" or not bundle_written(run):
            return False
        self.kept = str(run)
        if self.model is None and self.status != "done":
            try:
                self._register(run / "bundle")
            except (ModelError, OSError) as exc:  # incomplete, unreadable, or the models folder
                self.kept_problem = str(exc)     # cannot be written: the run folder keeps it
        return True

    def outcome_text(self, _: Translate = untranslated) -> str:
        if self.status == "done":
            return _("Done: saved as '{path}'.").format(path=self.model.path)
        if self.status == "failed" and self.worker is not None and self.worker.succeeded():
            text = _("Training finished but its bundle could not be saved: {error}").format(error=self.error)
        else:
            text = super().outcome_text(_)
        if self.model is not None:
            text += " " + _("The last bundle it saved is in the Model list as '{path}'.").format(path=self.model.path)
        if self.kept:
            text += " " + _("The run folder is kept: {folder}").format(folder=self.kept)
            if self.kept_problem:
                text += " " + _("(its bundle could not be added to the Model list: {problem})").format(
                    problem=self.kept_problem)
        return text
