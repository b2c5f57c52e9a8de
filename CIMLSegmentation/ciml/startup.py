"""Importing MONAI without the optional packages a command never uses.

``import monai`` imports every MONAI subpackage, and those import at once every optional
package that is installed and that MONAI looks up when a module loads (matplotlib, pandas,
scikit-learn, much of SciPy). In ``ciml segment`` (the Slicer module's worker job, a whole
process per case) that was about a second of its start-up (docs/speed.md, "Start-up"). A command
that needs none of them through MONAI hides them while MONAI imports: to MONAI they are then not
installed (its ``optional_import`` hands back a placeholder that fails only if used), and they
import as usual afterwards for the project's own code.
"""

from __future__ import annotations

import importlib
import sys

# What MONAI imports when it loads and the segmenting path never calls through MONAI: plots and
# notebooks (matplotlib), CSV datasets (pandas), downloads (requests), image readers other than
# SimpleITK (nibabel, PIL), scikit-learn (installed with nilearn), and the parts of SciPy its
# transforms and metrics use (the project's own code uses scipy.ndimage only, which stays).
UNUSED_BY_SEGMENTING = ("matplotlib", "pandas", "sklearn", "requests", "nibabel", "PIL",
                        "scipy.signal", "scipy.spatial", "scipy.optimize", "scipy.sparse", "scipy.linalg")


def import_monai_without(packages: tuple[str, ...] = UNUSED_BY_SEGMENTING) -> None:
    """Import MONAI with ``packages`` hidden; nothing happens when MONAI is already imported.

    Args:
        packages: top-level packages or modules (``scipy.signal``) MONAI is to see as missing;
            one already imported stays visible.
    """
    if "monai" in sys.modules:
        return
    hidden = [name for name in packages if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # the import system's "not importable" marker
    try:
        importlib.import_module("monai")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
