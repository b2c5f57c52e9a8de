"""A synthetic brain-tumour phantom in the BraTS 2020 format (t1, t1ce, t2, flair; labels 0/1/2/4).

The brain is an ellipsoid with a wavy outline (zero outside, as in skull-stripped BraTS
images) made of three tissues with partial volume between them: white matter inside, a
cortical grey-matter ribbon, cerebrospinal fluid (CSF) in an outer rim, the midline fissure and
two ventricles. A tumour, an irregular rotated ellipsoid placed at random in the brain, has the
three BraTS sub-regions nested: peritumoral edema (label 2) outermost, an enhancing rim
(label 4) around a necrotic core (label 1). Each tissue and sub-region has its own signal per
sequence (:data:`SIGNAL`), chosen to read as real scans do:

- edema is bright in FLAIR and T2, grey in T1 and T1ce;
- the enhancing rim is bright in T1ce only (gadolinium uptake);
- the necrotic core is dark in T1 and T1ce, bright in T2;
- CSF is dark in T1 and FLAIR and the brightest tissue in T2.

Each sequence then gets a per-case gain, a smooth multiplicative bias field and Rician noise.
The figures are in ``docs/sample-data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ciml.data.synthetic.common import (
    Grid,
    SyntheticCase,
    case_rng,
    check_case_arguments,
    random_rotation,
    rotated_offsets,
    smooth_field,
)

MODALITIES = ("t1", "t1ce", "t2", "flair")
CASE_PREFIX = "BraTS-sample"  # case ids: BraTS-sample-000, ... (no underscore: see write_case)
NECROSIS, EDEMA, ENHANCING = 1, 2, 4  # BraTS 2020 label values
LABELS = (0, NECROSIS, EDEMA, ENHANCING)

# Relative signal of each tissue (columns: MODALITIES), before gain, bias field and noise.
SIGNAL: dict[str, tuple[float, float, float, float]] = {
    #              t1    t1ce  t2    flair
    "csf":        (0.30, 0.30, 1.00, 0.15),
    "grey":       (0.65, 0.68, 0.65, 0.60),
    "white":      (0.90, 0.92, 0.42, 0.45),
    "necrosis":   (0.22, 0.22, 0.92, 0.40),  # label 1
    "edema":      (0.55, 0.58, 0.88, 0.95),  # label 2
    "enhancing":  (0.65, 1.30, 0.70, 0.72),  # label 4
}
LABEL_TISSUE = {NECROSIS: "necrosis", EDEMA: "edema", ENHANCING: "enhancing"}

# Both sizes cover the same ~240 mm field of view as BraTS; `small` is the fast variant for
# tests and CPU training (0.6 M voxels per modality), `full` the BraTS geometry.
SIZES: dict[str, Grid] = {
    "small": Grid(shape=(96, 96, 64), spacing=(2.5, 2.5, 2.5)),
    "full": Grid(shape=(240, 240, 155), spacing=(1.0, 1.0, 1.0)),
}
_FIELD_BOX_MM = (256.0, 256.0, 256.0)  # covers both sizes, so both sample the same fields


@dataclass(frozen=True)
class BrainPhantomSpec:
    """Anatomy, tumour and acquisition parameters of the phantom (lengths in mm).

    Depths are on the normalised brain radius ``rho`` (0 at the centre, 1 at the surface).
    Ranges ``(low, high)`` are drawn uniformly per case.
    """

    brain_semi_axes_mm: tuple[float, float, float] = (68.0, 84.0, 62.0)
    brain_scale: tuple[float, float] = (0.92, 1.05)
    outline_wobble: float = 0.04       # relative radial bumpiness of the brain outline
    outline_cell_mm: float = 40.0
    white_matter_depth: float = 0.80   # rho below which white matter lies
    csf_rim_depth: float = 0.94        # rho above which the outer CSF lies
    gyri_wobble: float = 0.03          # folds the tissue borders (in rho)
    gyri_cell_mm: float = 10.0
    partial_volume_width: float = 0.012  # width (in rho) of the soft tissue borders
    ventricle_centre_mm: tuple[float, float, float] = (9.0, 4.0, 10.0)  # mirrored in x
    ventricle_semi_axes_mm: tuple[float, float, float] = (5.0, 20.0, 9.0)
    ventricle_edge: float = 0.08       # softness of the ventricle walls (in ventricle radii)
    fissure_half_width_mm: float = 1.5
    fissure_edge_mm: float = 0.7       # softness of the fissure's sides
    tumour_radius_mm: tuple[float, float] = (14.0, 30.0)   # of the whole tumour (edema)
    tumour_elongation: tuple[float, float] = (0.75, 1.25)  # per-axis factor on the radius
    tumour_centre_depth: tuple[float, float] = (0.15, 0.55)
    core_fraction: tuple[float, float] = (0.40, 0.65)      # tumour core radius / whole
    necrosis_fraction: tuple[float, float] = (0.35, 0.65)  # necrosis radius / core
    core_irregularity: float = 0.20    # relative radial perturbation of the core
    edema_irregularity: float = 0.35   # of the edema (more finger-like)
    tumour_cell_mm: float = 12.0
    texture: float = 0.04              # relative fine texture of every tissue
    tumour_texture: float = 0.10       # extra heterogeneity inside the tumour
    texture_cell_mm: float = 6.0
    bias_amplitude: float = 0.12       # log-amplitude of the multiplicative bias field
    bias_cell_mm: float = 100.0
    gain: tuple[float, float] = (0.8, 1.2)  # per-sequence scanner gain
    signal_scale: float = 1000.0       # intensity of a relative signal of 1 at gain 1
    noise_sigma: float = 0.03          # Rician noise, relative to signal_scale * gain


BRAIN_PHANTOM = BrainPhantomSpec()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1.0))


def _tissue_fractions(rng: np.random.Generator, grid: Grid, spec: BrainPhantomSpec,
                      rho: np.ndarray) -> dict[str, np.ndarray]:
    """Partial-volume fractions of csf, grey and white matter, float32 ``(X, Y, Z)``."""
    x, y, z = grid.axes_mm()
    depth = rho + np.float32(spec.gyri_wobble) * smooth_field(rng, grid, spec.gyri_cell_mm,
                                                              _FIELD_BOX_MM)
    w = np.float32(spec.partial_volume_width)
    csf = _sigmoid((depth - np.float32(spec.csf_rim_depth)) / w)
    grey_or_csf = _sigmoid((depth - np.float32(spec.white_matter_depth)) / w)

    # Ventricles (mirrored pair) and the interhemispheric fissure are CSF too.
    cx, cy, cz = spec.ventricle_centre_mm
    ax, ay, az = spec.ventricle_semi_axes_mm
    ventricles = np.zeros_like(csf)
    for side in (-1.0, 1.0):
        r = np.sqrt(((x - side * cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2)
        ventricles = np.maximum(ventricles, _sigmoid((1.0 - r) / np.float32(spec.ventricle_edge)))
    # The fissure splits the hemispheres from the top down to just above the ventricles.
    edge = np.float32(spec.fissure_edge_mm)
    fissure = _sigmoid((np.float32(spec.fissure_half_width_mm) - np.abs(x)) / edge) \
        * _sigmoid((z - np.float32(cz + az)) / edge)
    extra_csf = np.maximum(ventricles, fissure)
    csf = np.maximum(csf, extra_csf)
    grey = (grey_or_csf * (1 - extra_csf) - csf).clip(0, 1)
    white = (1 - grey - csf).clip(0, 1)
    return {"csf": csf, "grey": grey, "white": white}


def _tumour_labels(rng: np.random.Generator, grid: Grid, spec: BrainPhantomSpec,
                   semi_axes: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """BraTS label map uint8 ``(X, Y, Z)``: nested edema, enhancing rim and necrosis."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    centre = direction * rng.uniform(*spec.tumour_centre_depth) * semi_axes
    radii = rng.uniform(*spec.tumour_radius_mm) * rng.uniform(*spec.tumour_elongation, size=3)
    u = rotated_offsets(grid, centre, random_rotation(rng))
    q = np.sqrt(sum((ui / np.float32(r)) ** 2 for ui, r in zip(u, radii)))  # 1 on the ellipsoid

    # Smooth radial perturbations, clipped so that the regions stay in one piece (a bounded
    # bump on the radius, not islands where the noise happens to be low).
    core_bump = 1 + np.float32(spec.core_irregularity) * np.clip(
        smooth_field(rng, grid, spec.tumour_cell_mm, _FIELD_BOX_MM), -1, 1)
    edema_bump = 1 + np.float32(spec.edema_irregularity) * np.clip(
        smooth_field(rng, grid, spec.tumour_cell_mm, _FIELD_BOX_MM), -1, 1)
    core = np.float32(rng.uniform(*spec.core_fraction))
    necrosis = core * np.float32(rng.uniform(*spec.necrosis_fraction))

    label = np.zeros(grid.shape, dtype=np.uint8)
    # Painted outermost first so that the inner regions nest inside the outer ones; the
    # necrosis shares the core's bump, so the enhancing rim keeps a similar thickness.
    label[q < edema_bump] = EDEMA
    label[q < core * core_bump] = ENHANCING
    label[q < necrosis * core_bump] = NECROSIS
    label[~brain] = 0
    return label


def brats_case(index: int, seed: int = 0, size: str = "small",
               spec: BrainPhantomSpec = BRAIN_PHANTOM) -> SyntheticCase:
    """Generate case ``index`` of the synthetic BraTS task.

    Args:
        index: case number (>= 0); the case id is ``BraTS-sample-<index:03d>``.
        seed: run seed; the case depends only on ``(seed, index)``.
        size: ``small`` (96 x 96 x 64 at 2.5 mm) or ``full`` (240 x 240 x 155 at 1 mm).
        spec: the phantom's parameters.

    Returns:
        The case: images t1, t1ce, t2, flair as float32 ``(X, Y, Z)`` (0 outside the brain),
        label uint8 ``(X, Y, Z)`` in {0, 1, 2, 4}; ``extras["tissue"]`` holds the
        healthy-tissue fractions (csf, grey, white) and ``extras["brain"]`` the brain mask.
    """
    grid = check_case_arguments(index, seed, size, SIZES)
    rng = case_rng(seed, index)
    x, y, z = grid.axes_mm()

    semi_axes = np.asarray(spec.brain_semi_axes_mm) * rng.uniform(*spec.brain_scale, size=3)
    rho = np.sqrt((x / np.float32(semi_axes[0])) ** 2 + (y / np.float32(semi_axes[1])) ** 2
                  + (z / np.float32(semi_axes[2])) ** 2)
    rho = rho * (1 + np.float32(spec.outline_wobble)
                 * smooth_field(rng, grid, spec.outline_cell_mm, _FIELD_BOX_MM))
    brain = rho < 1

    tissue = _tissue_fractions(rng, grid, spec, rho)
    label = _tumour_labels(rng, grid, spec, semi_axes, brain)
    texture = smooth_field(rng, grid, spec.texture_cell_mm, _FIELD_BOX_MM)
    # Texture is anatomy, shared by all sequences; the tumour is more heterogeneous.
    modulation = 1 + np.where(label > 0, np.float32(spec.tumour_texture),
                              np.float32(spec.texture)) * texture
    tumour = label > 0

    images: dict[str, np.ndarray] = {}
    for m, modality in enumerate(MODALITIES):
        healthy = sum(tissue[name] * np.float32(SIGNAL[name][m]) for name in tissue)
        lookup = np.zeros(max(LABELS) + 1, dtype=np.float32)
        for value, name in LABEL_TISSUE.items():
            lookup[value] = SIGNAL[name][m]
        clean = np.where(tumour, lookup[label], healthy) * modulation
        bias = np.exp(np.float32(spec.bias_amplitude)
                      * smooth_field(rng, grid, spec.bias_cell_mm, _FIELD_BOX_MM))
        scale = np.float32(spec.signal_scale * rng.uniform(*spec.gain))
        signal = clean * bias * scale
        sigma = np.float32(spec.noise_sigma) * scale
        # Rician: the magnitude of a complex signal with Gaussian noise on both channels.
        real = signal + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        images[modality] = (np.sqrt(real * real + imaginary * imaginary) * brain).astype(np.float32)

    return SyntheticCase(
        case_id=f"{CASE_PREFIX}-{index:03d}", images=images, label=label,
        spacing=grid.spacing, origin=grid.origin,
        extras={"tissue": tissue, "brain": brain},
    )
