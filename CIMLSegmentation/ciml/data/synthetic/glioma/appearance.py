"""What each sequence shows: normal tissue contrast, the tumour's classes, hard negatives,
then the scanner (gamma, bias field, slice thickness, Rician noise, intensity scale) and the
skull strip.

Normal tissue follows the textbook order of each sequence, or, in a share of cases, random
means (SynthSeg's idea: shape, not contrast, defines anatomy). The tumour cannot be random:
BraTS defines its sub-regions by contrast, so each class sits at a z (in units of the case's
own normal brain) drawn from the ranges measured on real scans (:data:`spec.TUMOUR_Z`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ciml.data.synthetic.common import Grid, smooth_field
from ciml.data.synthetic.glioma.anatomy import Anatomy
from ciml.data.synthetic.glioma.spec import (
    MODALITIES,
    RANDOM_TUMOUR_Z,
    TEXTBOOK_MEANS,
    TISSUES,
    TUMOUR_CLASSES,
    TUMOUR_Z,
    AppearanceSpec,
)
from ciml.data.synthetic.glioma.tumour import CLASS_CODE

_FIELD_BOX_MM = (400.0, 400.0, 400.0)
MIN_ENHANCEMENT_Z = 0.5  # enhancing tumour is brighter on T1ce than on T1 by at least this


def draw_tissue_means(rng: np.random.Generator, spec: AppearanceSpec) -> dict[str, dict[str, float]]:
    """Per sequence, each normal tissue's mean signal: textbook ranges, or random in a share of cases."""
    random = rng.uniform() < spec.random_contrast_share
    return {m: {t: float(rng.uniform(*(spec.random_mean if random else TEXTBOOK_MEANS[m][t]))) for t in TISSUES}
            for m in MODALITIES}


def draw_tumour_z(rng: np.random.Generator, measured: bool = True) -> dict[str, dict[str, float]]:
    """Per tumour class and sequence, its mean in z of the normal brain: within :data:`TUMOUR_Z`,
    or, not ``measured``, anywhere in :data:`RANDOM_TUMOUR_Z`."""
    z = {c: {m: float(rng.uniform(*(TUMOUR_Z[c][m] if measured else RANDOM_TUMOUR_Z))) for m in MODALITIES}
         for c in TUMOUR_CLASSES}
    z["enhancing"]["t1ce"] = max(z["enhancing"]["t1ce"], z["enhancing"]["t1"] + MIN_ENHANCEMENT_Z)
    return z


def _normal_stats(image: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    values = image[normal] if normal.any() else image
    return float(np.median(values)), max(float(values.std()), 1e-3)


def _blurred_classes(rng: np.random.Generator, classes: np.ndarray, spec: AppearanceSpec) -> dict[str, np.ndarray]:
    """Per tumour class, its mask blurred to a soft partial-volume weight, float32 ``(X, Y, Z)``."""
    sigma = float(rng.uniform(*spec.edge_blur_voxels))
    masks = {c: classes == CLASS_CODE[c] for c in TUMOUR_CLASSES}
    return {c: ndimage.gaussian_filter(m.astype(np.float32), sigma) for c, m in masks.items() if m.any()}


def edema_fade(rng: np.random.Generator, grid: Grid, classes: np.ndarray, spec: AppearanceSpec
               ) -> tuple[np.ndarray | None, dict]:
    """The share of the edema's contrast each voxel keeps, float32 ``(X, Y, Z)``: from
    ``edema_fade_floor`` at the tumour's outer edge (and outside it, where the edema's blurred
    border reaches) rising to 1 at ``edema_fade_mm`` inside it, as real edema fades into the brain
    around it. Only the edema's weight is scaled by it. ``None`` when the spec draws no fade.

    Draws from a child of ``rng`` (its stream is not advanced), so every other draw of the case
    is the same with or without the fade.
    """
    if spec.edema_fade_mm[1] <= 0 or not (classes == CLASS_CODE["edema"]).any():
        return None, {}
    child = rng.spawn(1)[0]
    reach, floor = float(child.uniform(*spec.edema_fade_mm)), float(child.uniform(*spec.edema_fade_floor))
    depth = ndimage.distance_transform_edt(classes != CLASS_CODE["healthy"], sampling=grid.spacing)
    share = np.clip(floor + (1 - floor) * depth / reach, 0.0, 1.0).astype(np.float32)
    return share, {"edema_fade_mm": reach, "edema_fade_floor": floor}


def clean_images(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, classes: np.ndarray,
                 spec: AppearanceSpec) -> tuple[dict[str, np.ndarray], dict]:
    """The sequences before the scanner: float32 ``(X, Y, Z)`` each. Returns them and the drawn
    contrast (tissue means, tumour z, hard negatives)."""
    means, tumour_z = draw_tissue_means(rng, spec), draw_tumour_z(rng, spec.measured_tumour_contrast)
    textures = {t: np.float32(rng.uniform(*spec.tissue_texture)) * smooth_field(rng, grid, spec.texture_cell_mm, _FIELD_BOX_MM)
                for t in TISSUES}
    weights = _blurred_classes(rng, classes, spec)
    tumour_weight = sum(weights.values()) if weights else np.zeros(grid.shape, np.float32)
    fade, faded = edema_fade(rng, grid, classes, spec)
    normal = anatomy.brain & (classes == CLASS_CODE["healthy"])
    cortex_lift = rng.uniform() < spec.cortex_flair_share
    dura = rng.uniform() < spec.dura_share
    edge = anatomy.brain & ~ndimage.binary_erosion(anatomy.brain)
    edge &= smooth_field(rng, grid, 40.0, _FIELD_BOX_MM) > 0
    images, lifts = {}, {}
    for m in MODALITIES:
        healthy = sum(anatomy.tissue[t] * np.float32(means[m][t]) * (1 + textures[t]) for t in TISSUES)
        median, sd = _normal_stats(healthy, normal)
        if m == "flair" and cortex_lift:
            lifts["cortex_flair_z"] = float(rng.uniform(*spec.cortex_flair_z))
            target = median + lifts["cortex_flair_z"] * sd
            healthy = healthy + anatomy.tissue["grey"] * np.float32(max(target - means[m]["grey"], 0.0))
        if m == "t1ce" and dura:
            lifts["dura_z"] = float(rng.uniform(*spec.dura_z))
            healthy = np.where(edge, np.float32(median + lifts["dura_z"] * sd), healthy)
        image = healthy * (1 - tumour_weight)
        for c, w in weights.items():
            texture = np.float32(rng.uniform(*spec.tumour_texture_z) * sd) * smooth_field(rng, grid, spec.texture_cell_mm, _FIELD_BOX_MM)
            z = np.float32(tumour_z[c][m]) * (fade if c == "edema" and fade is not None else np.float32(1))
            image = image + w * (np.float32(median) + z * np.float32(sd) + texture)
        images[m] = np.clip(image, 0.0, None).astype(np.float32) * anatomy.brain
    return images, {"tissue_means": means, "tumour_z": tumour_z, **lifts, **faded}


def _thick_slices(rng: np.random.Generator, image: np.ndarray, grid: Grid, thin: bool,
                  spec: AppearanceSpec) -> tuple[np.ndarray, dict]:
    """Blur along one random axis as a slice of random thickness would (FWHM = thickness)."""
    if thin or rng.uniform() >= spec.thick_slice_share:
        return image, {}
    axis, thickness = int(rng.integers(3)), float(rng.uniform(*spec.slice_mm))
    sigma = thickness / 2.355 / grid.spacing[axis]
    return ndimage.gaussian_filter1d(image, sigma, axis=axis), {"slice_axis": axis, "slice_mm": thickness}


def acquire(rng: np.random.Generator, grid: Grid, images: dict[str, np.ndarray], brain: np.ndarray,
            spec: AppearanceSpec) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Scan the clean images: per sequence gamma, bias field, slice thickness and Rician noise,
    per case an intensity scale and the skull strip. Returns the images (0 outside the mask),
    the mask (bool ``(X, Y, Z)``) and the drawn settings."""
    scale = float(np.exp(rng.uniform(*np.log(spec.intensity_scale))))
    mask = brain
    change = 0
    if rng.uniform() < spec.mask_change_share:
        change = int(rng.integers(spec.mask_change_voxels[0], spec.mask_change_voxels[1] + 1)) * int(rng.choice((-1, 1)))
        grow = ndimage.binary_dilation if change > 0 else ndimage.binary_erosion
        mask = grow(brain, iterations=abs(change))
    out, settings = {}, {"intensity_scale": scale, "mask_change_voxels": change}
    for m, image in images.items():
        peak = max(float(image.max()), 1e-6)
        gamma = float(np.exp(rng.normal(0.0, spec.gamma_log_sd)))
        image = (image / np.float32(peak)) ** np.float32(gamma)
        bias_sd = float(rng.uniform(*spec.bias_log_sd))
        image = image * np.exp(np.float32(bias_sd) * smooth_field(rng, grid, float(rng.uniform(*spec.bias_cell_mm)), _FIELD_BOX_MM))
        thin = m == "t1ce" and rng.uniform() < spec.t1ce_thin_share
        image, slices = _thick_slices(rng, image, grid, thin, spec)
        level = float(np.percentile(image[brain], 75)) if brain.any() else 1.0
        sigma = np.float32(level / rng.uniform(*spec.snr))
        real = image + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        out[m] = (np.sqrt(real * real + imaginary * imaginary) * np.float32(scale) * mask).astype(np.float32)
        settings[m] = {"gamma": gamma, "bias_log_sd": bias_sd, "noise_sigma": float(sigma), **slices}
    return out, mask, settings
