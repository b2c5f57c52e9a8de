"""Finding and describing model bundles from their metadata only (never their weights).

A bundle is read through ``ciml.bundle`` (``read_metadata``/``read_card``), so every rule of the
core's format and card validation applies here too; imports ``ciml.bundle`` and ``ciml.config``,
which load neither torch nor numpy. Models come from three places, in this order: the built-in
sample model shipped with the module, the user's models folder, and folders the user chose with
"Load bundle from folder".
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ciml.bundle import read_card, read_metadata
from ciml.config import ModelCard
from ciml.errors import CIMLError


class ModelError(Exception):
    """A folder that is not a usable bundle; the message is for the user."""


@dataclass
class ModelInfo:
    path: str
    name: str
    card: ModelCard
    origin: str = "folder"  # "built-in", "models folder" or "folder"
    trained: bool = True
    metadata: Dict = field(default_factory=dict, repr=False)

    @property
    def modalities(self) -> List[str]:
        return list(self.card.modality_names)

    @property
    def targets(self) -> List[str]:
        return list(self.card.target_names)

    @property
    def reference(self) -> str:
        return self.card.reference

    def kind(self, modality: str) -> str:
        return self.card.modalities[self.card.modality_index(modality)].kind

    @property
    def display_name(self) -> str:
        suffix = "" if self.trained else ", untrained"
        return f"{self.name} ({self.origin}{suffix})"


def read_model(folder, origin: str = "folder") -> ModelInfo:
    """Read a bundle's metadata and validated card. Raises ModelError with a one-line reason."""
    try:
        meta = read_metadata(folder)
        card = read_card(folder)
    except CIMLError as exc:  # the core's message already names the folder and the problem
        raise ModelError(str(exc)) from None
    provenance = meta.get("provenance")
    trained = bool(provenance.get("trained", True)) if isinstance(provenance, dict) else True
    return ModelInfo(path=str(folder), name=card.name, card=card, origin=origin, trained=trained, metadata=meta)


def find_models(builtin_dirs: Iterable = (), models_dir=None, extra_dirs: Iterable = ()):
    """All readable bundles, de-duplicated by real path; returns (models, problems)."""
    candidates = [(Path(d), "built-in") for d in builtin_dirs]
    if models_dir and Path(models_dir).is_dir():
        candidates += [(p, "models folder") for p in sorted(Path(models_dir).iterdir()) if p.is_dir()]
    candidates += [(Path(d), "folder") for d in extra_dirs]
    models, problems, seen = [], [], set()
    for folder, origin in candidates:
        key = os.path.realpath(str(folder))
        if key in seen or not folder.is_dir():
            continue
        seen.add(key)
        try:
            models.append(read_model(folder, origin))
        except ModelError as exc:
            problems.append(str(exc))
    return models, problems


def user_models_dir(settings_file_path: str) -> Path:
    """The models folder next to Slicer's user settings file."""
    return Path(settings_file_path).parent / "CIMLSegmentation" / "models"


def _join(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def summary(model: ModelInfo) -> str:
    """A few lines for the Model section: inputs, outputs and the task decomposition."""
    card = model.card
    lines = [f"Inputs: {_join(f'{m.name} ({m.kind})' for m in card.modalities)}; "
             f"outputs on the {card.reference} grid.",
             f"Targets: {_join(card.target_names)}."]
    for sub in card.subtasks:
        lines.append(f"Sub-task {sub.name}: {_join(sub.targets)} from {sub.primary} + {_join(sub.auxiliaries)}.")
    if not model.trained:
        lines.append("Untrained weights: results are meaningless until it is trained.")
    if card.description:
        lines.insert(0, card.description)
    return "\n".join(lines)


def register_bundle(bundle_dir, models_dir, name: Optional[str] = None) -> Path:
    """Copy a bundle into the models folder under a name that does not overwrite another."""
    model = read_model(bundle_dir)
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in (name or model.name)) or "model"
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target, n = models_dir / base, 2
    while target.exists():
        target, n = models_dir / f"{base}-{n}", n + 1
    shutil.copytree(str(bundle_dir), str(target))
    return target
