"""Slicer-side code of the CIMLSegmentation module, one concept per file.

Plain Python, tested with pytest outside Slicer: ``models`` (bundles), ``roles`` (role table,
volume auto-selection), ``report`` (what the worker's outputs mean), ``geometry`` (voxel grids),
``requirements`` (missing packages), ``progress`` (JSON-lines events, status texts), ``process``
(the worker process), ``job`` (one background worker run) and ``training`` (the training job).
They import from the core only its torch-free layer (``ciml.config``, ``ciml.bundle``,
``ciml.choices``, ``ciml.errors``), never slicer, qt, vtk, numpy or torch.

Slicer-only, importing slicer (and qt, vtk, numpy) at the top and imported only by the module
file and each other: ``install``, ``parameters``, ``export``, ``results``, ``segmentation`` and
``widget``. Nothing here imports torch or MONAI: the network runs in a separate worker process.
"""
