"""Slicer-side code of the CIMLSegmentation module, one concept per file.

``models``, ``roles``, ``progress``, ``process`` and ``training`` are plain Python (tested with
pytest outside Slicer). ``install``, ``parameters``, ``export``, ``results``, ``segmentation`` and
``widget`` talk to Slicer; those that need ``slicer`` at import time are imported only by the module
file. Nothing here imports torch or MONAI: the network runs in a separate worker process.
"""
