"""Slicer-side code of the CIMLSegmentation module, one concept per file.

Plain Python, tested with pytest outside Slicer: ``models`` (bundles), ``roles`` (role table,
volume auto-selection), ``report`` (what the worker's outputs mean), ``geometry`` (voxel grids,
hardening and resampling plans), ``requirements`` (missing packages, the MONAI release that fits,
pip constraints), ``progress`` (JSON-lines events, status texts), ``process`` (the worker
process), ``job`` (one background worker run), ``training`` (the training job), ``naming`` (the
names given in the scene: input roles, output attributes, colour tables, terminology context) and
``samplecase`` (the sample case's names and making). They import from the core only its
torch-free layer (``ciml.config``, ``ciml.bundle``, ``ciml.choices``, ``ciml.errors``), never
slicer, qt, vtk, numpy or torch.

Slicer-only, importing slicer (and qt, vtk, numpy) at the top and imported only by the module
file and each other: ``install``, ``parameters``, ``export``, ``results``, ``segmentation``,
``widget`` and ``sampledata`` (the sample case in the Sample Data module). Nothing here imports
torch or MONAI: the network runs in a separate worker process.
"""
