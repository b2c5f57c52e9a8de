"""Finding and describing model bundles from their metadata (weights are hashed, never loaded).

A bundle is read through ``ciml.bundle`` (``read_metadata``/``read_card``), so every rule of the
core's format and card validation applies here too; imports ``ciml.bundle`` and ``ciml.config``,
which load neither torch nor numpy. Models come from three places, in this order: the built-in
sample model shipped with the module, the user's models folder, and folders the user chose with
"Load bundle from folder".

Those folders are saved in Slicer's settings and compared by path, so two plain helpers live here
too: ``folder_list`` reads the saved value back as a list whatever the settings file made of it,
and ``path_key`` compares paths the way the platform does ('/' and '\\', case on Windows).
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from ciml.bundle import read_card, read_metadata, verify_weights
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
        """The card's name, or for a bundle in the models folder its folder's name, which says
        which of several fine-tuned copies it is (``training.fine_tuned_name``)."""
        suffix = "" if self.trained else ", untrained"
        name = Path(self.path).name if self.origin == "models folder" else self.name
        return f"{name} ({self.origin}{suffix})"


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


def path_key(path, pathmod=os.path) -> str:
    """A path in the form two spellings of the same folder share: separators, '..', a trailing
    separator and, on Windows, case. Qt's file dialog answers 'C:/Models/b' where Python writes
    'C:\\Models\\b'. ``pathmod`` is ``os.path`` (``ntpath`` or ``posixpath`` in tests)."""
    return pathmod.normcase(pathmod.normpath(str(path))) if str(path) else ""


def model_index(paths: Sequence, path, pathmod=os.path) -> int:
    """The index of ``path`` among ``paths`` (model paths, combo data) by ``path_key``; -1 if absent."""
    key = path_key(path, pathmod) if path else None
    return next((i for i, p in enumerate(paths) if key and path_key(p, pathmod) == key), -1)


def folder_list(value, pathmod=os.path) -> List[str]:
    """The saved bundle folders as a list of paths, whatever the settings returned.

    Slicer's settings are an INI file: a list of one folder is read back as a plain string, an
    empty list as None or '', and some bindings answer a tuple. Blank or non-path entries are
    dropped, and spellings of the same folder are kept once (the first)."""
    if value is None:
        items = []
    elif isinstance(value, (str, os.PathLike)):
        items = [value]  # never iterated: that would give its characters
    else:
        try:
            items = list(value)
        except TypeError:  # a number or other junk in a hand-edited settings file
            items = []
    folders, seen = [], set()
    for item in items:
        text = str(item) if isinstance(item, (str, os.PathLike)) else ""
        if text.strip() and path_key(text, pathmod) not in seen:
            seen.add(path_key(text, pathmod))
            folders.append(text)
    return folders


def add_folder(saved, folder, pathmod=os.path) -> List[str]:
    """The folder list to save after the user loaded ``folder`` (once, whatever its spelling)."""
    return folder_list(folder_list(saved, pathmod) + [str(folder)], pathmod)


def find_models(builtin_dirs: Iterable = (), models_dir=None, extra_dirs: Iterable = ()):
    """All readable bundles, de-duplicated by real path; returns (models, problems)."""
    candidates = [(Path(d), "built-in") for d in builtin_dirs]
    if models_dir and Path(models_dir).is_dir():
        candidates += [(p, "models folder") for p in sorted(Path(models_dir).iterdir()) if p.is_dir()]
    candidates += [(Path(d), "folder") for d in folder_list(extra_dirs)]
    models, problems, seen = [], [], set()
    for folder, origin in candidates:
        key = path_key(os.path.realpath(str(folder)))
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


def check_complete(bundle_dir) -> ModelInfo:
    """A bundle that can be used: readable metadata and card, and weights whose SHA-256 is the
    one the metadata records (a worker stopped while writing leaves no such bundle). Raises
    ModelError."""
    model = read_model(bundle_dir)
    try:
        verify_weights(Path(bundle_dir), model.metadata)
    except CIMLError as exc:
        raise ModelError(str(exc)) from None
    return model


def register_bundle(bundle_dir, models_dir, name: Optional[str] = None) -> Path:
    """Copy a complete bundle into the models folder under a name that does not overwrite another."""
    model = check_complete(bundle_dir)
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in (name or model.name)) or "model"
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target, n = models_dir / base, 2
    while target.exists():
        target, n = models_dir / f"{base}-{n}", n + 1
    shutil.copytree(str(bundle_dir), str(target))
    return target
