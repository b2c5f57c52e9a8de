"""CIML: multimodal tumour segmentation with complementary information mutual learning.

The core library of the CIMLSegmentation 3D Slicer extension. It never imports slicer, qt or
vtk, so that it runs in any Python with torch, MONAI and SimpleITK: inside Slicer's worker
process, on a training workstation, or under plain pytest.
"""

__version__ = "0.1.0"
