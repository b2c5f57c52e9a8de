"""Model bundles: a folder with ``metadata.json`` and ``model.safetensors``.

The metadata carries the model card, the format version, the package version, the training
provenance and the SHA-256 of the weights. Loading checks the format and the hash before reading
the weights, reads them with safetensors (never unpickling anything), and refuses weights that do
not fit the network the card describes. The format is documented in ``docs/bundle-format.md``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ciml import __version__
from ciml.config import ModelCard, card_from_dict
from ciml.errors import BundleError, CardError, CIMLError
from ciml.io_utils import atomic_directory

FORMAT = "ciml-bundle"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class Bundle:
    """A loaded bundle. ``network`` is in eval mode on the CPU unless loaded elsewhere."""

    path: Path
    card: ModelCard
    arch: str
    metadata: dict[str, Any]
    network: Any = field(repr=False, default=None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(path: str | Path, network: Any, card: ModelCard, arch: str = "ciml",
                provenance: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write ``network`` and its card as a bundle folder, atomically.

    Args:
        path: the bundle folder; an existing non-empty folder is refused unless ``overwrite``.
        network: a network built by :func:`ciml.nn.build_network` for ``card`` and ``arch``.
        card: the model card.
        arch: the architecture name.
        provenance: how the weights were made (command, data description, steps...).
        metrics: validation metrics (e.g. ``{"dice": {"WT": 0.9}}``).
    """
    from safetensors.torch import save_model

    from ciml.nn import parameter_count

    path = Path(path)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        # save_model (not save_file): MONAI's DynUNet registers some weights under two names.
        save_model(network, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ciml_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "arch": arch,
            "network_options": getattr(network, "options", {}),
            "parameters": parameter_count(network),
            "card": card.to_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha256_of(tmp / WEIGHTS_FILE),
                        "bytes": (tmp / WEIGHTS_FILE).stat().st_size},
            "provenance": provenance or {},
            "metrics": metrics or {},
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


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
        return card_from_dict(meta["card"])
    except CardError as exc:
        raise BundleError(f"{path}: {exc}") from None


def verify_weights(folder: Path, meta: dict[str, Any]) -> Path:
    """The weights file, after checking that its SHA-256 is the one the metadata records."""
    weights = folder / str(meta["weights"].get("file", WEIGHTS_FILE))
    if weights.parent != folder or not weights.is_file():
        raise BundleError(f"{folder}: weights file {weights.name!r} is missing")
    if sha256_of(weights) != meta["weights"].get("sha256"):
        raise BundleError(f"{weights}: SHA-256 does not match metadata.json; the bundle is corrupted "
                          "or was modified. Re-download or re-export it.")
    return weights


def load_bundle(path: str | Path, device: str = "cpu") -> Bundle:
    """Load a bundle's card and network, checking format, hash and the weights' fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ciml.nn import build_network

    folder = Path(path)
    folder = folder.parent if folder.name == METADATA_FILE else folder
    meta = read_metadata(folder)
    card = read_card(folder)
    weights = verify_weights(folder, meta)
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{weights}: not a readable safetensors file ({exc})") from None
    try:
        network = build_network(card, meta["arch"], meta.get("network_options"))
    except (CIMLError, TypeError) as exc:
        raise BundleError(f"{folder}: cannot build its network: {exc}") from None
    _check_fit(folder, network, state)
    network.load_state_dict(state, strict=False)
    network.to(device).eval()
    return Bundle(path=folder, card=card, arch=meta["arch"], metadata=meta, network=network)


def _check_fit(folder: Path, network: Any, found: dict[str, Any]) -> None:
    """Refuse weights whose names or shapes differ from the network the card describes.

    A weight the network registers under two names is saved once, so a name is only missing
    when no saved name shares its storage.
    """
    expected = network.state_dict()
    saved_storage = {expected[k].data_ptr() for k in found if k in expected}
    problems = [f"missing {k}" for k, v in expected.items()
                if k not in found and v.data_ptr() not in saved_storage]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [f"{k}: shape {tuple(found[k].shape)} instead of {tuple(v.shape)}"
                 for k, v in expected.items() if k in found and found[k].shape != v.shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BundleError(f"{folder}: the weights do not fit the network its card describes: "
                          f"{'; '.join(problems[:3])}{more}")
