"""Choosing the device and the mixed-precision type."""

from __future__ import annotations

import torch

from ciml.choices import DEVICES
from ciml.errors import CIMLError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``, one of :data:`~ciml.choices.DEVICES`.

    ``auto`` takes CUDA when present; asking for ``cuda`` without a GPU is an error.
    """
    if name not in DEVICES:
        raise CIMLError(f"unknown device {name!r} (choose {', '.join(DEVICES)})")
    if name == "cuda" and not torch.cuda.is_available():
        raise CIMLError("--device cuda was asked for, but no CUDA GPU is available to torch")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast type on ``device``: bf16 where the GPU supports it, else fp16; ``None`` on the CPU
    (no autocast: it is slower there)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
