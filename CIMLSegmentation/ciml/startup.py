"""What a whole ``ciml`` process sets up before torch loads: huge pages for large tensors, and
MONAI imported without the optional packages a command never uses.

Huge pages: PyTorch takes a large tensor's memory from the C library, which maps it fresh from
the system and unmaps it when the tensor is freed (glibc: every block over 32 MiB), so each
window's tensors fault their pages in again, 4 KiB at a time: one window of
the ``brats`` preset (152 x 96 x 128 voxels, 16 channels at full resolution) took about 2 million
page faults. With ``THP_MEM_ALLOC_ENABLE=1`` PyTorch asks Linux for transparent huge pages
(2 MiB) for tensors of 2 MiB and more (``madvise``): under 100 thousand faults, and the whole
``brats`` process about a tenth faster (docs/speed.md). PyTorch reads the variable once, at its
first allocation, so it is set before torch is imported; a value the user set is kept, and other
systems ignore it.

MONAI's optional packages: ``import monai`` imports every MONAI subpackage, and those import at
once every optional package that is installed and that MONAI looks up when a module loads
(matplotlib, pandas, scikit-learn, much of SciPy). In ``ciml segment`` (the Slicer module's worker job, a whole
process per case) that was about a second of its start-up (docs/speed.md, "Start-up"). A command
that needs none of them through MONAI hides them while MONAI imports: to MONAI they are then not
installed (its ``optional_import`` hands back a placeholder that fails only if used), and they
import as usual afterwards for the project's own code.
"""

from __future__ import annotations

import importlib
import os
import sys

# PyTorch's switch for transparent huge pages in its CPU allocator (c10/core/alloc_cpu.cpp).
HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"

# What MONAI imports when it loads and the segmenting path never calls through MONAI: plots and
# notebooks (matplotlib), CSV datasets (pandas), downloads (requests), image readers other than
# SimpleITK (nibabel, PIL), scikit-learn (installed with nilearn), and the parts of SciPy its
# transforms and metrics use (the project's own code uses scipy.ndimage only, which stays).
UNUSED_BY_SEGMENTING = ("matplotlib", "pandas", "sklearn", "requests", "nibabel", "PIL",
                        "scipy.signal", "scipy.spatial", "scipy.optimize", "scipy.sparse", "scipy.linalg")


def use_huge_pages() -> None:
    """Have PyTorch allocate large tensors on huge pages, unless the environment says otherwise.

    Effective only before torch's first allocation (in practice: before ``import torch``);
    child processes inherit it.
    """
    os.environ.setdefault(HUGE_PAGES, "1")


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
