"""Real brain anatomy for the glioma generator: the MNI152 2009 template's tissue maps,
moved and deformed per case.

The maps (grey and white matter probabilities, and the T1 template whose brain mask nilearn
takes at 0.2 of its maximum) ship inside nilearn's wheel; they are read from the installed
files without importing nilearn. CSF is what the brain holds besides grey and white matter.
The template is symmetric, so a left-right mirror is another plausible brain.

Arrays are ``(X, Y, Z)`` with X towards the patient's left and Y towards posterior, as
SimpleITK reads BraTS's files (identity direction).
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ciml.data.synthetic.common import Grid, axis_rotation, smooth_field
from ciml.data.synthetic.glioma.spec import AnatomySpec
from ciml.errors import CIMLError

_TEMPLATE = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
BRAIN_THRESHOLD = 0.2  # of the T1 template's maximum, as nilearn's load_mni152_brain_mask
_FIELD_BOX_MM = (400.0, 400.0, 400.0)


@dataclass(frozen=True)
class Anatomy:
    """Healthy tissue on a grid: ``tissue`` maps csf/grey/white to float32 fractions
    ``(X, Y, Z)`` that sum to 1 inside ``brain`` (bool ``(X, Y, Z)``) and 0 outside."""

    tissue: dict[str, np.ndarray]
    brain: np.ndarray


def _template_file(name: str) -> Path:
    try:
        path = Path(importlib.metadata.distribution("nilearn").locate_file(_TEMPLATE.format(name)))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise CIMLError("the glioma generator needs the MNI152 tissue maps that ship with nilearn: "
                        "pip install nilearn (or: pip install 'ciml-segmentation[synth]')")
    return path


@functools.lru_cache(maxsize=1)
def template() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The template's fractions (``brain``, ``grey``, ``white``, ``csf``: float32 ``(X, Y, Z)``
    at 1 mm, X to the left, Y to posterior) and the physical position (mm, ``(3,)``) of voxel
    ``(0, 0, 0)``, chosen so that the brain's bounding box is centred on 0."""
    arrays = {}
    for name in ("t1", "gm", "wm"):
        image = sitk.ReadImage(str(_template_file(name)))
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        array = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32) / 255.0
        # Flip every axis whose direction runs against the patient frame (MNI: x and y).
        arrays[name] = np.ascontiguousarray(array[tuple(slice(None, None, -1) if direction[a, a] < 0
                                                        else slice(None) for a in range(3))])
    brain = (arrays["t1"] >= BRAIN_THRESHOLD * arrays["t1"].max()).astype(np.float32)
    grey, white = arrays["gm"] * brain, arrays["wm"] * brain
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    inside = np.argwhere(brain > 0)
    centre = (inside.min(axis=0) + inside.max(axis=0)) / 2.0
    return {"brain": brain, "grey": grey, "white": white, "csf": csf}, -centre


def partition(fractions: dict[str, np.ndarray], brain: np.ndarray) -> dict[str, np.ndarray]:
    """Interpolated csf/grey/white fractions rescaled to sum to 1 inside ``brain``, 0 outside."""
    total = sum(fractions.values())
    safe = np.where(total > 0, total, 1.0)
    return {name: np.where(brain, v / safe, 0.0).astype(np.float32) for name, v in fractions.items()}


def sample_maps(maps: dict[str, np.ndarray], points: list[np.ndarray], origin: np.ndarray,
                spacing: float = 1.0) -> dict[str, np.ndarray]:
    """Linear interpolation of every map (``(X, Y, Z)``, voxel ``(0, 0, 0)`` at ``origin`` mm)
    at physical ``points`` (three float32 arrays of one shape); 0 outside."""
    index = [((p - np.float32(o)) / np.float32(spacing)).astype(np.float32) for p, o in zip(points, origin)]
    return {k: ndimage.map_coordinates(v, index, order=1, mode="constant", cval=0.0).astype(np.float32)
            for k, v in maps.items()}


def deformed_anatomy(rng: np.random.Generator, grid: Grid, spec: AnatomySpec) -> tuple[Anatomy, dict]:
    """The template brain on ``grid``, scaled, rotated, shifted, mirrored and elastically
    deformed at random. Returns the anatomy and the drawn settings."""
    maps, origin = template()
    scale = np.asarray(spec.template_scale) * rng.uniform(*spec.scale, size=3)
    angles = rng.uniform(*spec.rotation_deg, size=3)
    shift = rng.uniform(*spec.shift_mm, size=3)
    flip = bool(rng.uniform() < spec.flip_share)
    elastic = float(rng.uniform(*spec.elastic_mm))
    rotation = axis_rotation(angles)
    axes = [np.broadcast_to(a, grid.shape) for a in grid.axes_mm()]
    moved = [a + np.float32(elastic) * smooth_field(rng, grid, spec.elastic_cell_mm, _FIELD_BOX_MM)
             - np.float32(s) for a, s in zip(axes, shift)]
    # Output point p = R diag(scale) t + shift, so the template point is diag(1/scale) R^T (p - shift).
    points = [sum(np.float32(rotation[i, j]) * moved[i] for i in range(3)) / np.float32(scale[j])
              for j in range(3)]
    if flip:
        points[0] = -points[0]
    fractions = sample_maps(maps, points, origin)
    brain = fractions.pop("brain") >= 0.5
    tissue = partition(fractions, brain)
    settings = {"scale": scale.tolist(), "rotation_deg": angles.tolist(), "shift_mm": shift.tolist(),
                "mirrored": flip, "elastic_mm": elastic}
    return Anatomy(tissue, brain), settings
