"""Installing the worker's Python dependencies into Slicer's Python on first Apply (or Train),
after the user agrees; never at import time.

torch comes through light-the-torch (the installer the PyTorch extension uses: it picks the CUDA
build that fits the driver), run as processes of Slicer's Python so that torch is never imported
into Slicer's own process (``requirements.torch_install_commands``); then MONAI, at the release chosen by ``requirements`` from the installed torch, numpy and Python, and
the other packages through pip, with a constraints file that pins the installed torch, numpy and
SimpleITK so that pip cannot replace them. Slicer 5.12 and newer have ``slicer.packaging``
(``pip_ensure`` with constraints and a progress dialog); older ones get the same pip command
through ``slicer.util.pip_install``. A failed pip run under ``slicer.packaging`` has shown its own
dialog with pip's log, so the error is not shown a second time. Slicer-only: imports slicer at the
top; every decision is made by the plain ``requirements``.
"""

import importlib
import logging
import os
import subprocess
import tempfile
from typing import List

import slicer
from slicer.i18n import tr as _
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from ..process import python_executable
from ..requirements import (ALREADY_IN_SLICER, INSTALL_TIMEOUT_S, MONAI, PIP_REQUIREMENTS, TORCH, DependencyError,
                           constraints_text, missing, pip_requirements, torch_install_commands)
from ..winjob import windows_creation_flags

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
        if exc.shown:  # slicer.packaging has shown pip's failure with its log already
            logging.error("CIML Segmentation: %s", exc)
        else:
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
        importlib.invalidate_caches()  # MONAI's choice reads the new torch's metadata
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
        # slicer.packaging's progress dialog shows a failed pip run itself before raising
        shown = slicerPackaging is not None and isinstance(exc, subprocess.CalledProcessError)
        raise DependencyError(_("pip could not install {packages}: {error}\n\nSee the Python console for "
                                "pip's log.").format(packages=" ".join(requirements), error=exc), shown) from None
    finally:
        os.remove(constraints)


def _installTorch() -> None:
    """torch through light-the-torch, each step a process of Slicer's Python (never an import
    here); no console window on Windows."""
    flags = windows_creation_flags(suspended=False) if os.name == "nt" else 0
    for command in torch_install_commands(python_executable()):
        logging.info("CIML Segmentation: %s", " ".join(command))
        try:
            with WaitCursor():
                done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=INSTALL_TIMEOUT_S, creationflags=flags)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DependencyError(_("torch could not be installed: {error}").format(error=exc)) from None
        logging.info("CIML Segmentation: %s%s", done.stdout, done.stderr)
        if done.returncode != 0:
            lastLine = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise DependencyError(_("torch could not be installed: {error}\n\nSee the Python console for "
                                    "the installer's log.").format(error=lastLine))
