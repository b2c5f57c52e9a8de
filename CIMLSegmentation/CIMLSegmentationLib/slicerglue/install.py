"""Installing the worker's Python dependencies into Slicer's Python on first Apply (or Train),
after the user agrees; never at import time.

torch comes through the PyTorch extension (it picks the CUDA build that fits the driver); then
MONAI, at the release chosen by ``requirements`` from the installed torch, numpy and Python, and
the other packages through pip, with a constraints file that pins the installed torch, numpy and
SimpleITK so that pip cannot replace them. Slicer 5.12 and newer have ``slicer.packaging``
(``pip_ensure`` with constraints and a progress dialog); older ones get the same pip command
through ``slicer.util.pip_install``. Slicer-only: imports slicer at the top; every decision is
made by the plain ``requirements``.
"""

import importlib
import logging
import os
import tempfile
from typing import List

import slicer
from slicer.i18n import tr as _
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from ..requirements import (ALREADY_IN_SLICER, MONAI, PIP_REQUIREMENTS, TORCH, DependencyError,
                           constraints_text, missing, pip_requirements)

try:
    import slicer.packaging as slicerPackaging  # Slicer 5.12 and newer
except ImportError:  # Slicer 5.8 and 5.10: slicer.util.pip_install below
    slicerPackaging = None

REQUESTER = "CIML Segmentation"


class Declined(Exception):
    """The user chose not to install now."""


def ensureDependencies(ask: bool = True) -> bool:
    """Install what the worker lacks. Returns True when all is in place; False, with a message
    already shown, when the user declined or the packages cannot be put in place."""
    try:
        installDependencies(ask)
    except Declined:
        slicer.util.warningDisplay(_("Dependencies not installed: the segmentation cannot run. "
                                     "Press Apply again to install them."))
        return False
    except DependencyError as exc:
        slicer.util.errorDisplay(_("The Python packages CIML Segmentation needs could not be put in "
                                   "place:\n\n{reason}").format(reason=exc), _("Install failed"))
        return False
    return True


def missingPackages() -> List[str]:
    """What the worker lacks, without installing anything ('monai' when the installed MONAI
    does not fit the installed torch)."""
    torchMissing = missing([TORCH])
    if torchMissing:
        return torchMissing + [MONAI[0]] + missing(PIP_REQUIREMENTS)
    try:
        return pip_requirements()
    except DependencyError:
        return [MONAI[0]]


def installDependencies(ask: bool = True) -> None:
    """Install whatever is missing, asking first when ``ask``. Returns when all is in place;
    raises Declined, or DependencyError with the reason for the user."""
    if missing(ALREADY_IN_SLICER):
        raise DependencyError(_("This Slicer's SimpleITK or numpy is too old for CIML Segmentation: "
                                "please use Slicer 5.8 or newer."))
    torchMissing = missing([TORCH])
    if torchMissing:
        # MONAI's version depends on the torch the PyTorch extension will choose.
        toInstall = torchMissing + [_("{monai} (the release that fits that torch)").format(monai=MONAI[0])] \
            + missing(PIP_REQUIREMENTS)
    else:
        toInstall = pip_requirements()  # raises DependencyError when no MONAI fits this torch
    if not toInstall:
        return
    if ask and not slicer.util.confirmOkCancelDisplay(
            _("CIML Segmentation needs these Python packages, which will be downloaded and installed "
              "into Slicer (this can take several minutes and about 2-5 GB):\n\n{packages}\n\n"
              "Install now?").format(packages="\n".join(toInstall)),
            _("Install dependencies")):
        raise Declined()
    if torchMissing:
        _installTorch()
    requirements = pip_requirements()
    if requirements:
        _pipInstall(requirements)
    importlib.invalidate_caches()  # let package metadata see what pip has just written
    still = missing([TORCH] + PIP_REQUIREMENTS) + [r for r in pip_requirements() if r.startswith(MONAI[0])]
    if still:
        raise DependencyError(_("These packages are still missing after the install: {packages}. "
                                "See the Python console for pip's log.").format(packages=", ".join(still)))


def _pipInstall(requirements: List[str]) -> None:
    """pip install ``requirements`` with the installed torch, numpy and SimpleITK pinned."""
    handle, constraints = tempfile.mkstemp(prefix="ciml-constraints-", suffix=".txt", text=True)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(constraints_text())
        logging.info("CIML Segmentation: pip install %s with constraints:\n%s",
                     " ".join(requirements), constraints_text())
        if slicerPackaging is not None:
            # No dialog of its own (the user agreed above) and none in CTest; no restart prompt:
            # these packages load only in the worker process, which starts afresh for each run.
            slicerPackaging.pip_ensure(requirements, constraints=constraints, prompt_install=False,
                                       prompt_restart=False, requester=REQUESTER, skip_in_testing=False)
        else:
            with WaitCursor():
                slicer.util.pip_install(requirements + ["-c", constraints])
    except Exception as exc:  # pip raises CalledProcessError; slicer.packaging may raise others
        raise DependencyError(_("pip could not install {packages}: {error}\n\nSee the Python console for "
                                "pip's log.").format(packages=" ".join(requirements), error=exc)) from None
    finally:
        os.remove(constraints)


def _installTorch() -> None:
    try:
        # Lazy: the PyTorch extension may be absent, which is reported here rather than at load.
        import PyTorchUtils
    except ModuleNotFoundError:
        raise DependencyError(_("The PyTorch extension is not installed: install 'PyTorch' from the "
                                "Extensions Manager, restart Slicer and try again.")) from None
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    try:
        # askConfirmation=False: the user has just agreed to the whole list.
        with WaitCursor():
            torch = torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH[1])
    except Exception as exc:  # light-the-torch and pip raise many kinds
        raise DependencyError(_("The PyTorch extension could not install torch: {error}").format(error=exc)) from None
    if torch is None:
        raise DependencyError(_("The PyTorch extension could not install torch."))
