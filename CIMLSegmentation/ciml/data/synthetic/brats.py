"""A synthetic brain-tumour phantom in the BraTS 2020 format (t1, t1ce, t2, flair; labels 0/1/2/4).

The brain is an ellipsoid with a wavy outline (zero outside, as in skull-stripped BraTS
images) made of three tissues with partial volume between them: white matter inside, a
cortical grey-matter ribbon, cerebrospinal fluid (CSF) in an outer rim, the midline fissure and
two ventricles. A tumour, an irregular rotated ellipsoid placed anywhere in the brain, has the
three BraTS sub-regions nested: peritumoral edema (label 2) outermost, an enhancing rim
(label 4) around a necrotic core (label 1). Each tissue and region has its own signal per
sequence (:data:`SIGNAL`), chosen to read as real scans do:

- edema is bright in FLAIR and T2, grey in T1 and T1ce;
- the enhancing rim is bright in T1ce only (gadolinium uptake);
- the necrotic core is dark in T1 and T1ce, bright and heterogeneous in T2, intermediate in FLAIR;
- CSF is dark in T1 and FLAIR and the brightest tissue in T2.

As in real scans, each sub-task's primary (FLAIR for the whole tumour, T1ce for the core and
the enhancing tumour) misses something that an auxiliary shows: FLAIR-faint edema and FLAIR
artefacts (T2 tells them), a cyst that T1ce shows as necrosis (T2 and FLAIR tell it), a
non-enhancing core that T1ce shows as edema (T2), a haemorrhage that T1ce shows as enhancement
(T1). They are drawn in :mod:`ciml.data.synthetic.brats_tumour`, with the primary-only Dice
ceiling they imply.

Cases vary as real scans do: head size, shape and orientation (the brain's frame is rotated;
images keep the identity direction), voxel size, tumour position, and per sequence a gain, a
smooth multiplicative bias field and Rician noise, with an overall intensity scale.
:data:`SHIFTED_BRAIN_PHANTOM` draws these outside the standard ranges, for testing robustness
to another site. The figures are in ``docs/sample-data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ciml.data.synthetic.brats_tumour import (
    HIDDEN_FROM_PRIMARY,
    REGION_NAMES,
    TARGET_LABELS,
    TUMOUR,
    TumourSpec,
    hidden_from_primary,
    labels_of,
    primary_only_ceiling,
    tumour_regions,
)
from ciml.data.synthetic.common import (
    Grid,
    SyntheticCase,
    axis_rotation,
    case_rng,
    check_case_arguments,
    rotated_offsets,
    smooth_field,
)
from ciml.errors import CIMLError

MODALITIES = ("t1", "t1ce", "t2", "flair")
CASE_PREFIX = "BraTS-sample"  # case ids: BraTS-sample-000, ... (no underscore: see write_case)
NECROSIS, EDEMA, ENHANCING = 1, 2, 4  # BraTS 2020 label values
LABELS = (0, NECROSIS, EDEMA, ENHANCING)
TISSUES = ("csf", "grey", "white")

# Relative signal of each tissue and region (columns: MODALITIES), before texture, gain, bias
# field and noise. None: the sequence shows the healthy tissue there, as if nothing were there.
SIGNAL: dict[str, tuple[float | None, ...]] = {
    #                  t1    t1ce  t2    flair
    "csf":            (0.30, 0.30, 1.00, 0.15),
    "grey":           (0.65, 0.68, 0.65, 0.60),
    "white":          (0.90, 0.92, 0.42, 0.45),
    "edema":          (0.55, 0.58, 0.88, 0.95),  # label 2
    "faint_edema":    (None, None, 0.86, None),  # label 2: FLAIR under-calls it; T2 shows it
    "satellite":      (0.55, 0.58, 0.88, 0.95),  # label 2: a focus of edema
    "flair_artefact": (None, None, None, 0.95),  # label 0: FLAIR as a satellite, else normal
    "non_enhancing":  (0.50, 0.58, 0.66, 0.90),  # label 1: T1ce as edema, darker in T2
    "enhancing":      (0.65, 1.30, 0.70, 0.72),  # label 4
    "necrosis":       (0.22, 0.22, 0.82, 0.55),  # label 1
    "cyst":           (0.22, 0.22, 1.05, 0.12),  # label 0: T1, T1ce as necrosis; T2, FLAIR as CSF
    "haemorrhage":    (1.30, 1.30, 0.70, 0.72),  # label 1: T1ce as enhancing, bright in T1 too
}
# Fluid is homogeneous where its signal is fluid-like (the tumour's texture elsewhere, so that
# the cyst's texture in T1ce is the necrosis's).
HOMOGENEOUS_IN = {"cyst": ("t2", "flair")}

# Both sizes cover the same ~240 mm field of view as BraTS (times the case's voxel zoom);
# `small` is the fast variant for tests and CPU training (0.6 M voxels per modality), `full`
# the BraTS geometry.
SIZES: dict[str, Grid] = {
    "small": Grid(shape=(96, 96, 64), spacing=(2.5, 2.5, 2.5)),
    "full": Grid(shape=(240, 240, 155), spacing=(1.0, 1.0, 1.0)),
}
# Covers both sizes at the largest voxel zoom, so both sample the same fields.
_FIELD_BOX_MM = (360.0, 360.0, 360.0)


@dataclass(frozen=True)
class BrainPhantomSpec:
    """Anatomy, tumour and acquisition parameters of the phantom (lengths in mm).

    Depths are on the normalised brain radius ``rho`` (0 at the centre, 1 at the surface).
    Ranges ``(low, high)`` are drawn uniformly per case (``intensity_scale`` log-uniformly).
    """

    brain_semi_axes_mm: tuple[float, float, float] = (68.0, 84.0, 62.0)
    brain_scale: tuple[float, float] = (0.90, 1.06)  # per axis: head size and shape
    rotation_deg: tuple[float, float] = (0.0, 15.0)  # head rotation about each axis, either sign
    voxel_zoom: tuple[float, float] = (0.92, 1.12)   # on the grid's spacing, shape kept
    fit_margin: float = 0.97           # the brain spans at most this share of the half field of view
    outline_wobble: float = 0.06       # relative radial bumpiness of the brain outline
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
    tumour: TumourSpec = TUMOUR
    texture: float = 0.04              # relative fine texture of every tissue
    tumour_texture: float = 0.10       # extra heterogeneity inside the tumour
    texture_cell_mm: float = 6.0
    bias_amplitude: tuple[float, float] = (0.05, 0.20)  # log-amplitude of the bias field
    bias_cell_mm: float = 100.0
    gain: tuple[float, float] = (0.8, 1.2)  # per-sequence scanner gain
    intensity_scale: tuple[float, float] = (0.3, 3.0)   # per-case factor on signal_scale
    signal_scale: float = 1000.0       # intensity of a relative signal of 1 at gain 1
    noise_sigma: tuple[float, float] = (0.02, 0.045)  # Rician, relative to the signal scale


BRAIN_PHANTOM = BrainPhantomSpec()
# Another "site": every acquisition and head parameter drawn outside the standard ranges.
SHIFTED_BRAIN_PHANTOM = replace(
    BRAIN_PHANTOM, brain_scale=(1.08, 1.18), rotation_deg=(20.0, 30.0), voxel_zoom=(1.15, 1.30),
    bias_amplitude=(0.28, 0.40), intensity_scale=(4.0, 12.0), noise_sigma=(0.06, 0.09))
SHIFTED_FIELDS = ("brain_scale", "rotation_deg", "voxel_zoom", "bias_amplitude",
                  "intensity_scale", "noise_sigma")
VARIATIONS = {"standard": BRAIN_PHANTOM, "shifted": SHIFTED_BRAIN_PHANTOM}


@dataclass(frozen=True)
class Head:
    """One case's head: ``semi_axes`` ``(3,)`` mm in its own frame, ``rotation`` ``(3, 3)``
    (its axes, as columns, in scanner coordinates) from ``angles_deg`` about x, y, z, and the
    voxel ``zoom`` on the grid's spacing."""

    semi_axes: np.ndarray
    rotation: np.ndarray
    angles_deg: tuple[float, float, float]
    zoom: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise, in float32 (any shape)."""
    return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1.0))


def _fitting_zoom(semi_axes: np.ndarray, rotation: np.ndarray, spec: BrainPhantomSpec) -> float:
    """The smallest voxel zoom at which the rotated brain fits every size's grid."""
    reach = np.sqrt(((rotation * semi_axes) ** 2).sum(axis=1)) / (1 - spec.outline_wobble)
    half_fov = np.min([[(n - 1) / 2 * s for n, s in zip(g.shape, g.spacing)] for g in SIZES.values()], axis=0)
    return float((reach / (spec.fit_margin * half_fov)).max())


def _draw_head(rng: np.random.Generator, spec: BrainPhantomSpec) -> Head:
    """Draw the head's size, shape and orientation and the voxel zoom; the zoom is raised
    where needed so that the brain fits the grid (as an operator sets the field of view)."""
    semi_axes = np.asarray(spec.brain_semi_axes_mm) * rng.uniform(*spec.brain_scale, size=3)
    angles = rng.uniform(*spec.rotation_deg, size=3) * np.where(rng.uniform(size=3) < 0.5, -1, 1)
    rotation = axis_rotation(angles)
    zoom = max(rng.uniform(*spec.voxel_zoom), _fitting_zoom(semi_axes, rotation, spec))
    return Head(semi_axes, rotation, tuple(float(a) for a in angles), float(zoom))


def _brain_radius(rng: np.random.Generator, grid: Grid, spec: BrainPhantomSpec, head: Head,
                  frame: list[np.ndarray]) -> np.ndarray:
    """The normalised brain radius ``rho`` float32 ``(X, Y, Z)`` (brain: ``rho < 1``), its
    outline perturbed by a bounded smooth bump; ``frame`` holds the brain-frame coordinates."""
    rho = np.sqrt(sum((c / np.float32(a)) ** 2 for c, a in zip(frame, head.semi_axes)))
    bump = np.clip(smooth_field(rng, grid, spec.outline_cell_mm, _FIELD_BOX_MM), -1, 1)
    return rho * (1 + np.float32(spec.outline_wobble) * bump)


def _tissue_fractions(rng: np.random.Generator, grid: Grid, spec: BrainPhantomSpec,
                      rho: np.ndarray, frame: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Partial-volume fractions of csf, grey and white matter, float32 ``(X, Y, Z)``."""
    x, y, z = frame
    depth = rho + np.float32(spec.gyri_wobble) * smooth_field(rng, grid, spec.gyri_cell_mm, _FIELD_BOX_MM)
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


def _clean_image(m: int, tissue: dict[str, np.ndarray], region: np.ndarray, texture: np.ndarray,
                 spec: BrainPhantomSpec) -> np.ndarray:
    """Sequence ``MODALITIES[m]`` before gain, bias and noise: float32 ``(X, Y, Z)``.

    A region shows its own signal with the tumour's texture, or, where its signal is None,
    the healthy tissue with the healthy texture (it is then invisible in this sequence).
    """
    healthy = sum(tissue[name] * np.float32(SIGNAL[name][m]) for name in TISSUES)
    own = np.array([np.nan if name == "healthy" or SIGNAL[name][m] is None else SIGNAL[name][m]
                    for name in REGION_NAMES], dtype=np.float32)
    shows_own = ~np.isnan(own)
    amplitude = np.where(shows_own, spec.tumour_texture, spec.texture).astype(np.float32)
    for name, modalities in HOMOGENEOUS_IN.items():
        if MODALITIES[m] in modalities:
            amplitude[REGION_NAMES.index(name)] = spec.texture
    value = np.where(shows_own[region], np.nan_to_num(own)[region], healthy)
    return value * (1 + amplitude[region] * texture)


def _acquire(rng: np.random.Generator, grid: Grid, spec: BrainPhantomSpec,
             clean: list[np.ndarray], brain: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """Scan the clean images (float32 ``(X, Y, Z)`` each, in MODALITIES order): per case an
    intensity scale, bias amplitude and noise level, per sequence a gain, a bias field and
    Rician noise. Returns the images (0 outside ``brain``) and the drawn settings."""
    scale = spec.signal_scale * float(np.exp(rng.uniform(*np.log(spec.intensity_scale))))
    bias_amplitude, noise = float(rng.uniform(*spec.bias_amplitude)), float(rng.uniform(*spec.noise_sigma))
    images, gains = {}, {}
    for modality, image in zip(MODALITIES, clean):
        bias = np.exp(np.float32(bias_amplitude) * smooth_field(rng, grid, spec.bias_cell_mm, _FIELD_BOX_MM))
        gains[modality] = float(rng.uniform(*spec.gain))
        level = np.float32(scale * gains[modality])
        sigma = np.float32(noise) * level
        # Rician: the magnitude of a complex signal with Gaussian noise on both channels.
        real = image * bias * level + sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(grid.shape, dtype=np.float32)
        images[modality] = (np.sqrt(real * real + imaginary * imaginary) * brain).astype(np.float32)
    settings = {"intensity_scale": scale / spec.signal_scale, "bias_amplitude": bias_amplitude,
                "noise_sigma": noise, "gain": gains}
    return images, settings


def brats_case(index: int, seed: int = 0, size: str = "small",
               spec: BrainPhantomSpec = BRAIN_PHANTOM) -> SyntheticCase:
    """Generate case ``index`` of the synthetic BraTS task.

    Args:
        index: case number (>= 0); the case id is ``BraTS-sample-<index:03d>``.
        seed: run seed; the case depends only on ``(seed, index)``.
        size: ``small`` (96 x 96 x 64, 2.5 mm times the case's zoom) or ``full``
            (240 x 240 x 155, 1 mm times the same zoom): the same anatomy in mm.
        spec: the phantom's parameters (:data:`BRAIN_PHANTOM`, :data:`SHIFTED_BRAIN_PHANTOM`).

    Returns:
        The case: images t1, t1ce, t2, flair as float32 ``(X, Y, Z)`` (0 outside the brain),
        label uint8 ``(X, Y, Z)`` in {0, 1, 2, 4}. ``extras``: ``tissue`` (healthy-tissue
        fractions csf, grey, white), ``brain`` (mask), ``regions`` (uint8 map of
        ``brats_tumour.REGION_NAMES`` codes), ``hidden_from_primary`` (per target, the masks
        its primary cannot show: see :func:`primary_only_ceiling`) and ``acquisition`` (the
        drawn head and scanner settings).
    """
    base = check_case_arguments(index, seed, size, SIZES)
    rng = case_rng(seed, index)
    head = _draw_head(rng, spec)
    grid = Grid(base.shape, tuple(s * head.zoom for s in base.spacing))
    if any(n * s > box for n, s, box in zip(grid.shape, grid.spacing, _FIELD_BOX_MM)):
        raise CIMLError(f"voxel zoom {head.zoom:.2f} makes a field of view larger than the "
                        f"phantom's fields ({_FIELD_BOX_MM[0]:.0f} mm)")
    frame = rotated_offsets(grid, np.zeros(3), head.rotation)  # brain-frame coordinates (mm)

    rho = _brain_radius(rng, grid, spec, head, frame)
    brain = rho < 1
    tissue = _tissue_fractions(rng, grid, spec, rho, frame)
    region = tumour_regions(rng, grid, spec.tumour, head.semi_axes, head.rotation, brain, _FIELD_BOX_MM)
    texture = smooth_field(rng, grid, spec.texture_cell_mm, _FIELD_BOX_MM)
    clean = [_clean_image(m, tissue, region, texture, spec) for m in range(len(MODALITIES))]
    images, settings = _acquire(rng, grid, spec, clean, brain)

    acquisition = {"zoom": head.zoom, "spacing": grid.spacing, "rotation_deg": head.angles_deg,
                   "brain_semi_axes_mm": tuple(float(a) for a in head.semi_axes), **settings}
    return SyntheticCase(
        case_id=f"{CASE_PREFIX}-{index:03d}", images=images, label=labels_of(region),
        spacing=grid.spacing, origin=grid.origin,
        extras={"tissue": tissue, "brain": brain, "regions": region,
                "hidden_from_primary": hidden_from_primary(region), "acquisition": acquisition},
    )


def variation_spec(variation: str) -> BrainPhantomSpec:
    """The spec of a named variation (``standard`` or ``shifted``)."""
    if variation not in VARIATIONS:
        raise CIMLError(f"variation must be one of {', '.join(VARIATIONS)}, got {variation!r}")
    return VARIATIONS[variation]


def measure_primary_only_ceiling(n_cases: int, seed: int = 0, size: str = "small",
                                 variation: str = "standard") -> dict[str, dict[str, float]]:
    """:func:`primary_only_ceiling` over cases ``0 .. n_cases - 1``: per target its ``mean``,
    ``sd`` (population), ``min`` and ``below_one`` (the share of cases with a ceiling < 1)."""
    spec = variation_spec(variation)
    rows = [primary_only_ceiling(brats_case(i, seed=seed, size=size, spec=spec)) for i in range(n_cases)]
    stats = {}
    for target in TARGET_LABELS:
        values = np.array([row[target] for row in rows])
        stats[target] = {"mean": float(values.mean()), "sd": float(values.std()),
                         "min": float(values.min()), "below_one": float((values < 1).mean())}
    return stats


def primary_only_ceiling_table(n_cases: int = 20, seed: int = 0, size: str = "small",
                               variation: str = "standard") -> str:
    """:func:`measure_primary_only_ceiling` as a Markdown table (one row per target)."""
    stats = measure_primary_only_ceiling(n_cases, seed=seed, size=size, variation=variation)
    lines = ["| target | primary | ceiling, mean ± SD | lowest | cases below 1 |", "|---|---|---|---|---|"]
    for target, s in stats.items():
        lines.append(f"| {target} | {HIDDEN_FROM_PRIMARY[target].primary} | {s['mean']:.3f} ± {s['sd']:.3f} "
                     f"| {s['min']:.3f} | {s['below_one']:.0%} |")
    return "\n".join(lines)
