"""Realistic synthetic gliomas in the BraTS format (t1, t1ce, t2, flair; labels 0/1/2/4), for
training a model that works on real scans without having seen a patient.

Per case, in order: the MNI152 template's anatomy, moved and deformed
(:mod:`.anatomy`); a tumour grown from a seed that pushes the anatomy aside (:mod:`.tumour`);
each sequence's contrast, hard negatives, bias, slice thickness, noise and skull strip
(:mod:`.appearance`). Every range is in :mod:`.spec`. Needs nilearn installed (its wheel
ships the template); nothing is downloaded.

Imports numpy, scipy, SimpleITK and ``ciml.data.synthetic.common``; never torch, and never
nilearn itself (its files are located through the package metadata).
"""

from __future__ import annotations

from ciml.data.synthetic.common import Grid, SyntheticCase, case_rng, check_case_arguments
from ciml.data.synthetic.glioma.anatomy import deformed_anatomy
from ciml.data.synthetic.glioma.appearance import acquire, clean_images
from ciml.data.synthetic.glioma.spec import GLIOMA, MODALITIES, VARIATIONS, GliomaSpec
from ciml.data.synthetic.glioma.tumour import grow, labels_of

CASE_PREFIX = "Glioma-sample"
# Both cover BraTS's 240 x 240 x 155 mm field of view; `small` is the working grid of the
# built-in model (2.5 mm), `full` BraTS's own.
SIZES: dict[str, Grid] = {
    "small": Grid(shape=(96, 96, 62), spacing=(2.5, 2.5, 2.5)),
    "full": Grid(shape=(240, 240, 155), spacing=(1.0, 1.0, 1.0)),
}


def glioma_case(index: int, seed: int = 0, size: str = "small", spec: GliomaSpec = GLIOMA) -> SyntheticCase:
    """Generate case ``index`` of the glioma task.

    Args:
        index: case number (>= 0); the case id is ``Glioma-sample-<index:03d>``.
        seed: run seed; the case depends only on ``(seed, index)``.
        size: ``small`` (96 x 96 x 62 at 2.5 mm) or ``full`` (240 x 240 x 155 at 1 mm).
        spec: the generator's ranges (:data:`spec.GLIOMA`).

    Returns:
        The case: images t1, t1ce, t2, flair float32 ``(X, Y, Z)`` (0 outside the brain mask),
        label uint8 ``(X, Y, Z)`` in {0, 1, 2, 4}. ``extras``: ``tissue`` (csf/grey/white
        fractions after the mass effect), ``brain`` (the mask), ``classes`` (the tumour's class
        map, :data:`tumour.CLASS_CODE`) and ``settings`` (everything drawn).
    """
    grid = check_case_arguments(index, seed, size, SIZES)
    rng = case_rng(seed, index)
    anatomy, placement = deformed_anatomy(rng, grid, spec.anatomy)
    anatomy, classes, growth = grow(rng, grid, anatomy, spec.tumour)
    clean, contrast = clean_images(rng, grid, anatomy, classes, spec.appearance)
    images, mask, scanner = acquire(rng, grid, clean, anatomy.brain, spec.appearance)
    label = labels_of(classes) * mask
    return SyntheticCase(
        case_id=f"{CASE_PREFIX}-{index:03d}", images=images, label=label.astype("uint8"),
        spacing=grid.spacing, origin=grid.origin,
        extras={"tissue": anatomy.tissue, "brain": mask, "classes": classes,
                "settings": {"anatomy": placement, "tumour": growth, "contrast": contrast, "scanner": scanner}})


__all__ = ["CASE_PREFIX", "GLIOMA", "MODALITIES", "SIZES", "VARIATIONS", "GliomaSpec", "glioma_case"]
