"""The glue half of CIMLSegmentationLib: the files that import slicer (and qt, vtk, numpy) at the
top and run only inside Slicer. ``install`` (the confirmed install of the worker's packages),
``parameters`` (the parameter node), ``export`` (inputs to files), ``results`` (the worker's
outputs into MRML), ``segmentation`` (the segmentation job), ``widget`` (the panel) and
``sampledata`` (the sample case in the Sample Data module).

They may import slicer, qt, vtk, ctk, numpy, the plain half (``CIMLSegmentationLib``) and the
core's torch-free layer; they are imported only by the module file and each other. Every decision
is made in the plain half on plain values; these files move values between it and Slicer. Names
are camelCase, as Qt's and MRML's are.
"""
