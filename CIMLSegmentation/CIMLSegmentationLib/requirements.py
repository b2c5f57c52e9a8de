"""The Python packages the worker needs in Slicer's Python, and which of them are missing.

Plain Python on the standard library only, tested outside Slicer: versions are read from package
metadata, so nothing here imports torch or any package it checks. ``install`` asks the user and
installs what is missing.
"""

import importlib.metadata
import re
from typing import Callable, List, Optional, Tuple

TORCH = ("torch", ">=2.2")
PIP_REQUIREMENTS = [("monai", ">=1.4"), ("safetensors", ">=0.4"), ("pyyaml", ">=6"),
                    ("scipy", ">=1.10"), ("tqdm", ">=4.60")]
ALREADY_IN_SLICER = [("SimpleITK", ">=2.3"), ("numpy", ">=1.24")]


def version_tuple(text: str) -> Tuple[int, ...]:
    """'2.3.1+cu121' -> (2, 3, 1); enough for >= checks on release numbers."""
    parts = []
    for piece in re.split(r"[.+-]", text):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(requirements, version_of: Callable[[str], Optional[str]] = installed_version) -> List[str]:
    """The requirements ('name>=x') not installed or installed too old."""
    result = []
    for name, spec in requirements:
        found = version_of(name)
        if found is None or version_tuple(found) < version_tuple(spec.lstrip(">=")):
            result.append(f"{name}{spec}")
    return result
