"""Installing the worker's Python dependencies into Slicer's Python on first Apply (or Train),
after the user agrees; never at import time.

torch comes through the PyTorch extension (it picks the CUDA build that fits the driver); the
rest through pip. SimpleITK and numpy are left alone: Slicer ships its own builds. Slicer-only:
imports slicer at the top, so it is imported only by the panel; what is missing is decided by
the plain ``requirements``.
"""

import logging

import slicer
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from .requirements import ALREADY_IN_SLICER, PIP_REQUIREMENTS, TORCH, missing


def ensure_dependencies(ask: bool = True) -> bool:
    """Install what the worker lacks. Returns True when all is in place; False, with a message
    already shown, when the user declined or an install failed."""
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
        # Lazy: the PyTorch extension may be absent, which is reported here rather than at load.
        import PyTorchUtils
    except ModuleNotFoundError:
        raise RuntimeError("the PyTorch extension is not installed: install 'PyTorch' from the "
                           "Extensions Manager, restart Slicer and press Apply again") from None
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    # askConfirmation=False: the user has just agreed to the whole list.
    if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH[1]) is None:
        raise RuntimeError("the PyTorch extension could not install torch")
