"""Importing MONAI without the optional packages a command never uses.

``import monai`` imports every MONAI subpackage, and those import at once every optional
package that is installed and that MONAI looks up when a module loads: matplotlib's pyplot,
pandas, scikit-learn, scipy.signal. In ``ciml segment`` (the Slicer module's worker job, a whole
process per case) that was a third of the start-up (see docs/segment.md, "Start-up"). A command
that needs none of them through MONAI hides them while MONAI imports: to MONAI they are then not
installed (its ``optional_import`` hands back a placeholder that fails only if used), and they
import as usual afterwards for the project's own code.
"""

from __future__ import annotations

import importlib
import sys

# What MONAI imports when it loads and the segmenting path never calls through MONAI: plots and
# notebooks (matplotlib), CSV datasets (pandas), the ultrasound confidence map (scipy.signal),
# and scikit-learn, pulled in by nilearn's presence.
UNUSED_BY_SEGMENTING = ("matplotlib", "pandas", "sklearn", "scipy.signal", "requests")


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
