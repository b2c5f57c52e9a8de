"""Slicer-side code of the CIMLSegmentation module, one concept per file, in two halves.

This package is the plain half: plain Python, tested with pytest outside Slicer. ``models``
(bundles), ``roles`` (role table, volume auto-selection), ``report`` (what the worker's outputs
mean, the relations table's cells), ``geometry`` (voxel grids, hardening and resampling plans),
``requirements`` (missing packages, the MONAI release that fits, pip constraints), ``progress``
(JSON-lines events, status texts), ``process`` (the worker process), ``job`` (one background
worker run, and what the panel decides when a run ends), ``training`` (the training job),
``naming`` (the names given in the scene: input roles, output attributes, colour tables,
terminology context) and ``samplecase`` (the sample case's names and making). They import from
the core only its torch-free layer (``ciml.config``, ``ciml.bundle``, ``ciml.choices``,
``ciml.errors``), never slicer, qt, vtk, ctk, numpy or torch. Names are snake_case.

The glue half is the sub-package ``slicerglue``: every file that imports slicer, qt, vtk, ctk or
MRML, and nothing else. Nothing in either half imports torch or MONAI: the network runs in a
separate worker process.
"""
