"""Fine-tuning from the GUI: ``ciml train`` as a background job, like a segmentation.

Plain Python (tested with pytest on real processes), importing only ``job`` and ``models``:
``TrainingJob`` runs the worker in a temporary run folder, and on success copies the new bundle
(``RUN/bundle``) into the user's models folder so the Model list shows it.
"""

from pathlib import Path
from typing import List, Optional

from .job import BackgroundJob, TimerFactory
from .models import ModelInfo, read_model, register_bundle


def train_command(python: str, data_dir: str, run_dir: str, init: Optional[str] = None,
                  max_steps: Optional[int] = None):
    args = [python, "-m", "ciml", "train", "--data", str(data_dir), "--out", str(run_dir)]
    if init:
        args += ["--init", str(init)]
    if max_steps:
        args += ["--max-steps", str(int(max_steps))]
    return args + ["--progress", "json"]


def train_disabled_reason(data_dir: str) -> str:
    """Why Train cannot run now ('' when it can). While training runs the button is Cancel,
    which the panel decides."""
    if not data_dir:
        return "Choose a dataset folder."
    if not Path(data_dir).is_dir():
        return f"The dataset folder does not exist: {data_dir}"
    return ""


class TrainingJob(BackgroundJob):
    """One training run; on success ``model`` is the bundle registered in ``models_dir``."""

    TITLE = "CIML Segmentation training"
    TEMP_PREFIX = "ciml-train-"
    POLL_MS = 500

    def __init__(self, module_dir: str, data_dir: str, models_dir: str, init: Optional[str] = None,
                 max_steps: Optional[int] = None, python: Optional[str] = None,
                 timer: Optional[TimerFactory] = None, onProgress=None, onFinished=None):
        super().__init__(module_dir, python, timer, onProgress, onFinished)
        self.data_dir, self.models_dir = str(data_dir), str(models_dir)
        self.init, self.max_steps = init, max_steps
        self.model: Optional[ModelInfo] = None

    def _prepare(self, folder: str) -> List[str]:
        return train_command(self.python, self.data_dir, str(Path(folder) / "run"), self.init, self.max_steps)

    def _finish(self, folder: str) -> None:
        target = register_bundle(Path(folder) / "run" / "bundle", self.models_dir)
        self.model = read_model(target, origin="models folder")

    def outcome_text(self) -> str:
        if self.status == "done":
            return f"Done: saved as '{self.model.path}'."
        if self.status == "failed" and self.worker is not None and self.worker.succeeded():
            return f"Training finished but its bundle could not be saved: {self.error}"
        return super().outcome_text()
