"""CIML: multimodal tumour segmentation with complementary information mutual learning.

The core library of the CIMLSegmentation 3D Slicer extension. It never imports slicer, qt or
vtk, so that it runs in any Python with torch, MONAI and SimpleITK: inside Slicer's worker
process, on a training workstation, or under plain pytest.

Packages, lowest layer first: ``choices``, ``errors``, ``config`` (the model card) and
``bundle`` (its metadata) import neither torch nor numpy; ``data`` adds numpy and SimpleITK;
``nn`` and ``losses`` add torch and MONAI; ``inference``, ``evaluation`` and ``training`` are
the shipped runtime; ``research`` (demo, benchmark, study) and ``cli`` sit on top. A package
imports only from the layers below it (docs/developers.md).
"""

__version__ = "0.1.0"
