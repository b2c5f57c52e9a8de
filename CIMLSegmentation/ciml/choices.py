"""The named choices shared by the command line, the core and the Slicer module, written once.

Plain tuples and no imports: the command-line parser and the Slicer module's own process read
them without loading torch or numpy.
"""

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when present, else the CPU
PROGRESS_MODES = ("bar", "json", "none")  # json: one object per line on stdout (the Slicer worker)
OUTPUT_FORMATS = ("nii.gz", "nrrd")  # images `ciml segment` writes
ARCHITECTURES = ("ciml", "early-fusion", "maml")  # networks ciml.nn.build_network builds
SAMPLE_SIZES = ("small", "full")  # synthetic case sizes (ciml.data.synthetic)
CACHE_MODES = ("memory", "disk", "none")  # where loaded training cases are kept
MAP_KINDS = ("effects", "gradcam", "all", "none")  # per-modality maps `ciml segment` writes
BUNDLE_CHOICES = ("best", "last")  # what a training run's RUN/bundle holds; the first is the default
DEMO_SEED = 2026  # `ciml demo`'s case; the built-in model was trained on seed 0, so it is unseen
