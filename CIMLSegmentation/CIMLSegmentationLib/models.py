"""Finding and describing model bundles, reading only ``metadata.json`` (no torch, no ciml).

A bundle is any folder with a ``metadata.json`` whose ``format`` is ``ciml-bundle``. Models come
from three places, in this order: the built-in sample model shipped with the module, the user's
models folder, and folders the user chose with "Load bundle from folder".
"""

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

BUNDLE_FORMAT = "ciml-bundle"
METADATA_FILE = "metadata.json"


class ModelError(Exception):
    """A folder that is not a usable bundle; the message is for the user."""


@dataclass
class ModelInfo:
    path: str
    name: str
    card: Dict
    origin: str = "folder"  # "built-in", "models folder" or "folder"
    trained: bool = True
    metadata: Dict = field(default_factory=dict, repr=False)

    @property
    def modalities(self) -> List[str]:
        return [m["name"] for m in self.card.get("modalities", [])]

    @property
    def targets(self) -> List[str]:
        return [t["name"] for t in self.card.get("targets", [])]

    @property
    def reference(self) -> str:
        return self.card.get("reference", self.modalities[0] if self.modalities else "")

    def kind(self, modality: str) -> str:
        for m in self.card.get("modalities", []):
            if m["name"] == modality:
                return m.get("kind", "MR")
        return "MR"

    @property
    def display_name(self) -> str:
        suffix = "" if self.trained else ", untrained"
        return f"{self.name} ({self.origin}{suffix})"


def read_model(folder, origin: str = "folder") -> ModelInfo:
    """Read a bundle's card. Raises ModelError with a one-line reason."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise ModelError(f"{folder}: no {METADATA_FILE}: not a CIML model bundle")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta_path}: cannot be read as JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{folder}: {METADATA_FILE} is not a '{BUNDLE_FORMAT}' file")
    card = meta.get("card")
    if not isinstance(card, dict) or not card.get("modalities") or not card.get("targets"):
        raise ModelError(f"{folder}: the model card lacks modalities or targets")
    trained = bool(meta.get("provenance", {}).get("trained", True))
    return ModelInfo(path=str(folder), name=str(card.get("name", folder.name)), card=card,
                     origin=origin, trained=trained, metadata=meta)


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


def _join(names: List[str]) -> str:
    return ", ".join(names) if names else "none"


def summary(model: ModelInfo) -> str:
    """A few lines for the Model section: inputs, outputs and the task decomposition."""
    card = model.card
    mods = [f"{m['name']} ({m.get('kind', 'MR')})" for m in card.get("modalities", [])]
    lines = [f"Inputs: {_join(mods)}; outputs on the {model.reference} grid.",
             f"Targets: {_join(model.targets)}."]
    for sub in card.get("subtasks", []):
        lines.append(f"Sub-task {sub['name']}: {_join(sub.get('targets', []))} from "
                     f"{sub['primary']} + {_join(sub.get('auxiliaries', []))}.")
    if not model.trained:
        lines.append("Untrained weights: results are meaningless until it is trained.")
    if card.get("description"):
        lines.insert(0, card["description"])
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
