"""Fine-tuning from the GUI: ``ciml train`` in the same background-process pattern.

Plain Python: the widget starts a ``TrainingRun``, polls it from its timer, and on success the
new bundle (``RUN/bundle``) is copied into the user's models folder so the Model list shows it.
"""

import tempfile
from pathlib import Path
from typing import Optional

from .models import ModelInfo, read_model, register_bundle
from .process import WorkerProcess, worker_environment


def train_command(python: str, data_dir: str, run_dir: str, init: Optional[str] = None,
                  max_steps: Optional[int] = None):
    args = [python, "-m", "ciml", "train", "--data", str(data_dir), "--out", str(run_dir)]
    if init:
        args += ["--init", str(init)]
    if max_steps:
        args += ["--max-steps", str(int(max_steps))]
    return args + ["--progress", "json"]


def train_disabled_reason(data_dir: str, running: bool = False) -> str:
    """Why Train cannot run now ('' when it can)."""
    if running:
        return "Training is running: wait for it or press Cancel."
    if not data_dir:
        return "Choose a dataset folder."
    if not Path(data_dir).is_dir():
        return f"The dataset folder does not exist: {data_dir}"
    return ""


class TrainingRun:
    """One training run in a temporary run folder; ``finish()`` registers the bundle."""

    def __init__(self, python: str, module_dir: str, data_dir: str, models_dir: str,
                 init: Optional[str] = None, max_steps: Optional[int] = None):
        self.run_dir = tempfile.mkdtemp(prefix="ciml-train-")
        self.models_dir = models_dir
        self.worker = WorkerProcess(
            train_command(python, data_dir, str(Path(self.run_dir) / "run"), init, max_steps),
            env=worker_environment(module_dir), temp_dir=self.run_dir)

    def start(self) -> "TrainingRun":
        self.worker.start()
        return self

    def finish(self) -> ModelInfo:
        """After a successful exit: copy RUN/bundle into the models folder, remove the run."""
        try:
            target = register_bundle(Path(self.run_dir) / "run" / "bundle", self.models_dir)
            return read_model(target, origin="models folder")
        finally:
            self.worker.cleanup()
