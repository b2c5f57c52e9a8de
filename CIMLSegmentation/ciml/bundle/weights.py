"""Saving and loading a bundle's network: safetensors weights checked against the card.

Loading checks the format and the hash before reading the weights, reads them with safetensors
(never unpickling anything), and refuses weights that do not fit the network the card describes.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from ciml import __version__
from ciml.bundle.metadata import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    read_card,
    read_metadata,
    sha256_of,
    verify_weights,
)
from ciml.config import ModelCard
from ciml.errors import BundleError, CIMLError
from ciml.io_utils import atomic_directory
from ciml.nn import build_network, parameter_count


@dataclass
class Bundle:
    """A loaded bundle. ``network`` is in eval mode on the CPU unless loaded elsewhere."""

    path: Path
    card: ModelCard
    arch: str
    metadata: dict[str, Any]
    network: Any = field(repr=False, default=None)


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


def load_bundle(path: str | Path, device: str = "cpu") -> Bundle:
    """Load a bundle's card and network, checking format, hash and the weights' fit."""
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
