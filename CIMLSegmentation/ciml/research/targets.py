"""The benchmark's configurations and the performance targets it checks, written once.

The targets and why they are set are in ``docs/performance-targets.md``; ``ciml benchmark``
prints each ratio beside its bound. Plain data, no imports: the command-line parser lists the
configurations without loading torch.
"""

CONFIGS = ("ciml", "ciml_effects", "ciml_cams", "early_fusion", "segresnet", "captum_loop")
LABELS = {
    "ciml": "(a) CIML segmentation",
    "ciml_effects": "(e) CIML + every modality's effect (withheld outputs)",
    "ciml_cams": "(b) CIML + all heat maps",
    "early_fusion": "(c) early fusion segmentation",
    "segresnet": "(f) MONAI BraTS SegResNet, one 240x240x160 window",
    "captum_loop": "(d) Captum LayerGradCam loop",
}
# ratio name -> (numerator, denominator, bound); None = report only.
RATIOS = {
    "ciml/early_fusion": ("ciml", "early_fusion", 1.3),
    "ciml_effects/ciml": ("ciml_effects", "ciml", 2.0),
    "ciml_cams/ciml": ("ciml_cams", "ciml", 2.0),
    "captum_loop/ciml_cams": ("captum_loop", "ciml_cams", None),
    # the network + window part of the yardstick; the whole-process targets are `pipelines`'
    "ciml/segresnet": ("ciml", "segresnet", None),
}
MEMORY_TARGET_BYTES = 3e9  # peak resident memory of each configuration on the CPU

# `ciml benchmark pipelines`: whole processes on the same case, each a separate process, against
# MONAI's BraTS bundle pipeline (the yardstick, ciml/research/yardstick.py).
# `segresnet` runs with PyTorch's default allocation, as its users run it; `segresnet_huge_pages`
# with the huge pages `ciml segment` sets for itself (ciml/startup.py), to show what that
# setting alone would give MONAI's pipeline.
PIPELINES = ("ciml_brats", "ciml_builtin", "segresnet", "segresnet_huge_pages")
PIPELINE_LABELS = {
    "ciml_brats": "ciml segment --maps none, `ciml init --preset brats` bundle",
    "ciml_builtin": "ciml segment --maps none, built-in model",
    "segresnet": "MONAI BraTS bundle pipeline (SegResNet, one 240x240x160 window)",
    "segresnet_huge_pages": "the same, THP_MEM_ALLOC_ENABLE=1",
}
PIPELINE_RATIOS = {
    "ciml_brats/segresnet": ("ciml_brats", "segresnet", 1.0),
    "ciml_builtin/segresnet": ("ciml_builtin", "segresnet", 0.5),
    "ciml_brats/segresnet_huge_pages": ("ciml_brats", "segresnet_huge_pages", None),
}

# `ciml benchmark plans` and `information`: sample cases the built-in model was not trained on
# (it trained on seed 0).
UNSEEN_SEED = 99

# `ciml benchmark plans`: window plans compared on a trained bundle (inference overrides of its
# card; window_voxels None: the training patch's voxels, the card default; "box": the whole body
# box, or the whole image when not cropped, as one window). The first, the card's own plan, is
# the reference every plan's agreement is measured against.
WINDOW_PLANS = {
    "the card's plan": {},
    "body box, roi tiles": {"crop": True, "window_voxels": 0},
    "body box, windows <= patch, overlap 0.25": {"crop": True, "window_voxels": None, "overlap": 0.25},
    "body box, windows <= patch, overlap 0.5": {"crop": True, "window_voxels": None, "overlap": 0.5},
    "body box + 8 voxels, windows <= patch, overlap 0.25": {"crop": True, "crop_margin": 8, "window_voxels": None,
                                                             "overlap": 0.25},
    "body box + 8 voxels, windows <= patch, overlap 0.5": {"crop": True, "crop_margin": 8, "window_voxels": None,
                                                            "overlap": 0.5},
    "body box, one window": {"crop": True, "window_voxels": "box"},
    "whole image, one window": {"crop": False, "window_voxels": "box"},
}


def ratio_verdicts(medians: dict[str, float], ratios: dict[str, tuple] = RATIOS) -> dict[str, dict]:
    """Each ratio of ``ratios`` whose two configurations were timed, with its bound's verdict.

    Args:
        medians: configuration (or process) name -> median seconds.
        ratios: ratio name -> (numerator, denominator, bound or None for report only);
            :data:`RATIOS` or :data:`PIPELINE_RATIOS`.

    Returns:
        ratio name -> ``{"value", "target", "met"}``; ``met`` is None for a report-only ratio.
    """
    verdicts = {}
    for key, (num, den, bound) in ratios.items():
        if num in medians and den in medians:
            value = medians[num] / medians[den]
            verdicts[key] = {"value": value, "target": bound, "met": None if bound is None else value <= bound}
    return verdicts
