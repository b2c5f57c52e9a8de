"""A bundle's metadata: format, card and the weights' hash, read without torch or numpy.

This is the part of a bundle the Slicer module reads in its own process (it never loads torch)
and the command line reads before deciding what to load. The format is documented in
``docs/bundle-format.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ciml import __version__
from ciml.config import ModelCard, card_from_dict
from ciml.errors import BundleError, CardError

FORMAT = "ciml-bundle"
FORMAT_VERSION = 2  # 2: PASSION's and DTC's settings in their own sections of `training`
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checked metadata of the bundle at ``path`` (a folder, or its metadata.json)."""
    path = Path(path)
    folder = path.parent if path.name == METADATA_FILE else path
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such bundle folder")
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {METADATA_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: not a {FORMAT} metadata file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise BundleError(f"{meta_path}: bundle format version {version!r} is not supported by "
                          f"ciml {__version__} (it reads versions 1 to {FORMAT_VERSION}); update ciml")
    for key in ("arch", "card", "weights"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing field {key!r}")
    return meta


def read_card(path: str | Path) -> ModelCard:
    """The validated card of a bundle, without touching its weights."""
    meta = read_metadata(path)
    try:
        return card_from_dict(stored_card(meta))
    except CardError as exc:
        raise BundleError(f"{path}: {exc}") from None


# Format 1 cards lacked fields added later; these are the values such bundles were trained with:
# the latent added as is (no decoder), PyTorch's default output bias, gates at the two deepest levels.
_V1_ABSENT = {("network", "gate_message"): "latent", ("training", "output_prior"): "none",
              ("network", "gate_levels"): [-2, -1]}
# Format 1 kept PASSION's and DTC's settings flat in `training`; format 2 gives each its section.
_V1_SECTIONS = {
    "passion": {"passion": "enabled", "distill_weight": "distill_weight",
                "prototype_weight": "prototype_weight", "passion_temperature": "temperature",
                "passion_epoch_steps": "epoch_steps", "passion_warmup_epochs": "warmup_epochs",
                "passion_preference_rate": "preference_rate"},
    "dtc": {"level_set_weight": "level_set_weight", "consistency_weight": "consistency_weight",
            "consistency_ramp_steps": "consistency_ramp_steps", "level_set_k": "level_set_k"},
}


def migrate_1_to_2(card: dict[str, Any]) -> dict[str, Any]:
    """A format 1 card as format 2 writes it: the fields it lacked set to what it was trained
    with (``_V1_ABSENT``, in the sections it has), and PASSION's and DTC's flat ``training``
    fields moved into ``training.passion`` and ``training.dtc``."""
    card = {k: dict(v) if isinstance(v, dict) else v for k, v in card.items()}
    for (section, name), value in _V1_ABSENT.items():
        if isinstance(card.get(section), dict) and name not in card[section]:
            card[section][name] = value
    training = card.get("training")
    if isinstance(training, dict):
        for section, renames in _V1_SECTIONS.items():
            moved = {new: training.pop(old) for old, new in renames.items()
                     if old in training and not isinstance(training[old], dict)}
            if moved:
                training[section] = moved
    return card


# Each entry turns a card of its format version into one of the next version, in order.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: migrate_1_to_2}


def stored_card(meta: dict[str, Any]) -> Any:
    """The card a bundle stores, migrated from its ``format_version`` (1 when absent) to the
    current format through :data:`MIGRATIONS`."""
    card = meta["card"]
    if not isinstance(card, dict):
        return card
    for version in range(meta.get("format_version", 1), FORMAT_VERSION):
        card = MIGRATIONS[version](card)
    return card


def verify_weights(folder: Path, meta: dict[str, Any]) -> Path:
    """The weights file, after checking that its SHA-256 is the one the metadata records."""
    weights = folder / str(meta["weights"].get("file", WEIGHTS_FILE))
    if weights.parent != folder or not weights.is_file():
        raise BundleError(f"{folder}: weights file {weights.name!r} is missing")
    if sha256_of(weights) != meta["weights"].get("sha256"):
        raise BundleError(f"{weights}: SHA-256 does not match metadata.json; the bundle is corrupted "
                          "or was modified. Re-download or re-export it.")
    return weights
