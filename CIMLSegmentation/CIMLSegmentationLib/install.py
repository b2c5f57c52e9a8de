"""Python dependencies of the worker, installed into Slicer's Python on first Apply, after the
user agrees. Never at import time; nothing here imports torch: versions are read from package
metadata. torch comes through the PyTorch extension (it picks the CUDA build that fits the
driver); the rest through pip. SimpleITK is left alone: Slicer ships its own build.
"""

import importlib.metadata
import logging
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


def ensure_dependencies(ask: bool = True) -> bool:
    """Install what the worker lacks. Returns True when all is in place; False, with a message
    already shown, when the user declined or an install failed."""
    import slicer
    from slicer.util import WaitCursor

    torch_missing = missing([TORCH])
    others = missing(PIP_REQUIREMENTS)
    if missing(ALREADY_IN_SLICER):
        slicer.util.errorDisplay("This Slicer's SimpleITK or numpy is too old for CIML "
                                 "Segmentation: please use Slicer 5.6 or newer.")
        return False
    if not torch_missing and not others:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "CIML Segmentation needs these Python packages, which will be downloaded and "
            "installed into Slicer (this can take several minutes and about 2-5 GB):\n\n"
            + "\n".join(torch_missing + others) + "\n\nInstall now?",
            "Install dependencies"):
        slicer.util.warningDisplay("Dependencies not installed: the segmentation cannot run. "
                                   "Press Apply again to install them.")
        return False
    try:
        with WaitCursor():
            if torch_missing:
                _install_torch()
            for requirement in others:
                logging.info("CIML Segmentation: installing %s", requirement)
                slicer.util.pip_install(requirement)
    except Exception as exc:  # pip and the PyTorch extension raise many kinds
        slicer.util.errorDisplay(f"Installing the dependencies failed: {exc}\n\n"
                                 "See the Python console for pip's log.", "Install failed")
        return False
    still = missing([TORCH] + PIP_REQUIREMENTS)
    if still:
        slicer.util.errorDisplay("These packages are still missing after the install: "
                                 + ", ".join(still), "Install failed")
        return False
    return True


def _install_torch() -> None:
    try:
        import PyTorchUtils  # the PyTorch extension, a dependency of this extension
    except ModuleNotFoundError:
        raise RuntimeError("the PyTorch extension is not installed: install 'PyTorch' from the "
                           "Extensions Manager, restart Slicer and press Apply again") from None
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    # askConfirmation=False: the user has just agreed to the whole list.
    if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH[1]) is None:
        raise RuntimeError("the PyTorch extension could not install torch")
