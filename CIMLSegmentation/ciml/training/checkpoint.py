"""Training checkpoints: everything a killed run needs to continue as if never stopped.

Checkpoints are the run's own files (never shipped to users; bundles are what users get), so
they use torch.save, loaded back with ``weights_only=True``: nothing but tensors and plain
containers is unpickled. numpy's random state is stored as plain lists for the same reason.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.errors import CIMLError
from ciml.io_utils import atomic_path

LAST = "last.pt"


def random_state() -> dict[str, Any]:
    """The state of every random generator a training step may draw from."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _plain_python_state(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain_python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def restore_random_state(state: dict[str, Any]) -> None:
    # A checkpoint loaded with map_location="cuda" holds the generator states on the GPU; the
    # setters take CPU byte tensors only (a GPU resume failed with "RNG state must be a
    # torch.ByteTensor" before the .cpu() calls).
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(folder: Path, step: int, payload: dict[str, Any]) -> Path:
    """Write ``last.pt`` atomically: a kill during the write leaves the previous one intact."""
    path = Path(folder) / LAST
    with atomic_path(path) as tmp:
        torch.save({"step": step, "random": random_state(), **payload}, tmp)
    return path


def load_checkpoint(folder: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(folder) / LAST
    if not path.is_file():
        raise CIMLError(f"cannot resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one message
        raise CIMLError(f"cannot resume: {path} is unreadable ({exc})") from None
