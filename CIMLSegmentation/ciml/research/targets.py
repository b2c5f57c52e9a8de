"""The benchmark's configurations and the performance targets it checks, written once.

The targets and why they are set are in ``docs/performance-targets.md``; ``ciml benchmark``
prints each ratio beside its bound. Plain data, no imports: the command-line parser lists the
configurations without loading torch.
"""

CONFIGS = ("ciml", "ciml_effects", "ciml_cams", "early_fusion", "captum_loop")
LABELS = {
    "ciml": "(a) CIML segmentation",
    "ciml_effects": "(e) CIML + every modality's effect (withheld outputs)",
    "ciml_cams": "(b) CIML + all heat maps",
    "early_fusion": "(c) early fusion segmentation",
    "captum_loop": "(d) Captum LayerGradCam loop",
}
# ratio name -> (numerator, denominator, bound); None = report only.
RATIOS = {
    "ciml/early_fusion": ("ciml", "early_fusion", 1.3),
    "ciml_effects/ciml": ("ciml_effects", "ciml", 2.0),
    "ciml_cams/ciml": ("ciml_cams", "ciml", 2.0),
    "captum_loop/ciml_cams": ("captum_loop", "ciml_cams", None),
}
MEMORY_TARGET_BYTES = 4e9  # peak resident memory of (a) on the CPU
