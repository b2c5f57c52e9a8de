"""A bundle's metadata: format, card and the weights' hash, read without torch or numpy.

This is the part of a bundle the Slicer module reads in its own process (it never loads torch)
and the command line reads before deciding what to load. The format is documented in
``docs/bundle-format.md``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ciml import __version__
from ciml.config import ModelCard, card_from_dict
from ciml.errors import BundleError, CardError

FORMAT = "ciml-bundle"
FORMAT_VERSION = 1
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


# Card fields added after bundles were written, with the value those bundles were trained with.
_BEFORE_FIELDS = {("network", "gate_message"): "latent", ("training", "output_prior"): "none",
                  ("network", "gate_levels"): [-2, -1]}


def stored_card(meta: dict[str, Any]) -> Any:
    """The card as a bundle stores it, completed for bundles written before a field existed: a
    card without ``network.gate_message`` was trained with the latent added as is, one without
    ``training.output_prior`` with PyTorch's default output bias, one without
    ``network.gate_levels`` with gates at the two deepest levels."""
    card = meta["card"]
    if not isinstance(card, dict):
        return card
    for (section, name), value in _BEFORE_FIELDS.items():
        if isinstance(card.get(section), dict) and name not in card[section]:
            card = {**card, section: {**card[section], name: value}}
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
