"""The glioma generator's parameters, in one place (lengths in mm, ``(low, high)`` drawn
uniformly per case unless said otherwise).

The tumour's appearance is set in z-units of the case's own normal brain (median and standard
deviation over brain voxels outside the tumour), as the images are normalised at inference: the
ranges are those measured on real BraTS 2018 cases (the median z of each label per case, clipped
at the 99.5th percentile and z-scored inside the brain), widened by half a unit on each side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("t1", "t1ce", "t2", "flair")
TISSUES = ("csf", "grey", "white")

# Normal tissue, relative to the brightest tissue of the sequence, in the textbook order:
# T1 and T1ce white > grey > CSF; T2 CSF > grey > white; FLAIR grey >= white > CSF.
TEXTBOOK_MEANS: dict[str, dict[str, tuple[float, float]]] = {
    "t1":    {"csf": (0.20, 0.40), "grey": (0.60, 0.80), "white": (0.95, 1.00)},
    "t1ce":  {"csf": (0.20, 0.40), "grey": (0.62, 0.82), "white": (0.95, 1.00)},
    "t2":    {"csf": (0.95, 1.00), "grey": (0.45, 0.65), "white": (0.30, 0.45)},
    "flair": {"csf": (0.08, 0.25), "grey": (0.62, 0.80), "white": (0.45, 0.60)},
}

# Tumour classes: label value and, per sequence, its median in z of the normal brain.
# "fluid" and "solid" are the two faces of label 1 (necrosis, non-enhancing tumour).
TUMOUR_CLASSES = ("edema", "fluid", "solid", "enhancing")
TUMOUR_LABEL = {"edema": 2, "fluid": 1, "solid": 1, "enhancing": 4}
TUMOUR_Z: dict[str, dict[str, tuple[float, float]]] = {
    "edema":     {"t1": (-0.73, 1.34), "t1ce": (-1.19, 1.15), "t2": (0.0, 2.07), "flair": (0.63, 3.81)},
    "fluid":     {"t1": (-1.70, -0.20), "t1ce": (-1.80, -0.30), "t2": (1.50, 3.50), "flair": (0.40, 3.50)},
    "solid":     {"t1": (-1.00, 0.50), "t1ce": (-0.50, 0.50), "t2": (0.70, 2.50), "flair": (1.00, 3.50)},
    "enhancing": {"t1": (-1.76, 1.14), "t1ce": (0.80, 3.50), "t2": (-0.50, 3.00), "flair": (0.30, 4.60)},
}

RANDOM_TUMOUR_Z = (-2.0, 4.0)  # the ablation without measured contrast: any class, any sequence


@dataclass(frozen=True)
class AnatomySpec:
    """Where the template brain goes and how it is deformed.

    ``template_scale``: per axis, the template's size onto a BraTS brain's (MNI152 is larger
    than SRI24 front to back and top to bottom); ``scale`` multiplies it per axis per case.
    ``elastic_mm``: the standard deviation (mm) of a smooth displacement field whose features
    are ``elastic_cell_mm`` apart.
    """

    template_scale: tuple[float, float, float] = (0.98, 0.88, 0.92)
    scale: tuple[float, float] = (0.90, 1.10)
    rotation_deg: tuple[float, float] = (-10.0, 10.0)
    shift_mm: tuple[float, float] = (-6.0, 6.0)
    elastic_mm: tuple[float, float] = (0.0, 3.0)
    elastic_cell_mm: float = 30.0
    flip_share: float = 0.5            # left-right mirror (the template is symmetric)


@dataclass(frozen=True)
class TumourSpec:
    """The glioma's geometry. Volumes in ml; radii in mm; shares are probabilities per case."""

    whole_volume_ml: tuple[float, float] = (10.0, 250.0)   # drawn log-uniformly
    core_share: tuple[float, float] = (0.05, 0.85)         # TC volume / WT volume
    elongation: tuple[float, float] = (0.75, 1.25)         # per axis, on the radius
    irregularity: float = 0.25         # relative radial bump of the core
    edema_irregularity: float = 0.40   # of the edema (finger-like)
    cell_mm: float = 12.0              # scale of the bumps
    rim_mm: tuple[float, float, float] = (1.5, 3.0, 6.0)   # enhancing shell: triangular (low, mode, high)
    non_enhancing_share: float = 0.22  # core without enhancement (lower grade)
    partial_rim_share: float = 0.30    # part of the rim is solid non-enhancing tumour instead
    solid_core_share: float = 0.35     # the inner core is solid tumour, not fluid necrosis
    edema_needs_white: float = 0.30    # edema spreads where white matter exceeds this fraction
    edema_near_core_mm: float = 3.0    # ... or this close to the core
    seed_in_white_share: float = 0.90
    multifocal_share: float = 0.10
    tumour_free_share: float = 0.05
    mass_effect: tuple[float, float] = (0.0, 0.5)          # push at the seed, in core radii
    mass_effect_reach: tuple[float, float] = (1.5, 3.0)    # Gaussian fall-off, in core radii


@dataclass(frozen=True)
class AppearanceSpec:
    """Contrast, texture and acquisition per sequence."""

    measured_tumour_contrast: bool = True  # TUMOUR_Z; False: every class in RANDOM_TUMOUR_Z
    random_contrast_share: float = 0.30   # normal tissue means drawn at random, SynthSeg-style
    random_mean: tuple[float, float] = (0.10, 1.00)
    tissue_texture: tuple[float, float] = (0.01, 0.05)     # relative, smooth, per tissue
    tumour_texture_z: tuple[float, float] = (0.10, 0.50)   # per voxel, in z of the normal brain
    texture_cell_mm: float = 5.0
    edge_blur_voxels: tuple[float, float] = (0.5, 1.0)     # soft tumour borders
    edema_fade_mm: tuple[float, float] = (0.0, 0.0)        # edema fades to normal over this far from its edge ...
    edema_fade_floor: tuple[float, float] = (0.2, 0.6)     # ... keeping this share of its contrast at the edge
    cortex_flair_share: float = 0.20      # cortex lifted in FLAIR to the faintest edema ...
    cortex_flair_z: tuple[float, float] = (0.60, 1.00)     # ... at this z
    dura_share: float = 0.50              # an enhancing shell at the brain's edge in T1ce (label 0)
    dura_z: tuple[float, float] = (1.0, 3.0)
    bias_log_sd: tuple[float, float] = (0.0, 0.30)
    bias_cell_mm: tuple[float, float] = (60.0, 120.0)
    gamma_log_sd: float = 0.15
    thick_slice_share: float = 0.60       # a sequence acquired with thick slices ...
    slice_mm: tuple[float, float] = (2.0, 6.0)             # ... along one random axis
    t1ce_thin_share: float = 0.70         # T1ce is a 3D acquisition: kept sharp this often
    snr: tuple[float, float] = (10.0, 40.0)                # white matter signal / noise sigma
    intensity_scale: tuple[float, float] = (50.0, 5000.0)  # log-uniform, per case
    mask_change_share: float = 0.30       # the skull strip erodes or dilates the brain ...
    mask_change_voxels: tuple[int, int] = (1, 2)           # ... by this many voxels


@dataclass(frozen=True)
class GliomaSpec:
    """Everything the glioma generator draws from."""

    anatomy: AnatomySpec = field(default_factory=AnatomySpec)
    tumour: TumourSpec = field(default_factory=TumourSpec)
    appearance: AppearanceSpec = field(default_factory=AppearanceSpec)


GLIOMA = GliomaSpec()


# Variations that each take one part of the generator away, to measure what it buys on real scans.
VARIATIONS: dict[str, GliomaSpec] = {
    "standard": GLIOMA,
    "no-mass-effect": GliomaSpec(tumour=TumourSpec(mass_effect=(0.0, 0.0))),
    # no FLAIR-bright cortex, no enhancing dura
    "no-hard-negatives": GliomaSpec(appearance=AppearanceSpec(cortex_flair_share=0.0, dura_share=0.0)),
    # the tumour classes at random z in one range for all (not the ranges measured on real scans)
    "random-tumour-contrast": GliomaSpec(appearance=AppearanceSpec(measured_tumour_contrast=False)),
    # one clean scanner: no gamma, bias, thick slices or skull-strip change, high SNR
    "clean-scanner": GliomaSpec(appearance=AppearanceSpec(
        bias_log_sd=(0.0, 0.0), gamma_log_sd=0.0, thick_slice_share=0.0, snr=(40.0, 40.0),
        mask_change_share=0.0)),
    # the scanner's bias, gamma and noise kept; no thick slices or skull-strip change (BraTS's
    # scans are resampled to 1 mm and stripped by one tool)
    "mild-scanner": GliomaSpec(appearance=AppearanceSpec(thick_slice_share=0.0, mask_change_share=0.0)),
    # tumours of BraTS's size: whole tumours around 100 ml (the standard draw's median is 50 ml)
    "brats-volumes": GliomaSpec(tumour=TumourSpec(whole_volume_ml=(30.0, 300.0))),
    # ... and thicker enhancing rims (the real cases' median ET is 0.44 of their median TC, the
    # standard draw's 0.15: docs/results/size-gap-two-stages.json)
    "brats-volumes-thick-rims": GliomaSpec(tumour=TumourSpec(whole_volume_ml=(30.0, 300.0), rim_mm=(2.0, 5.0, 10.0))),
    # ... and edema that fades towards its outer edge, as the real cases' faint edema does
    "brats-volumes-faded-edema": GliomaSpec(tumour=TumourSpec(whole_volume_ml=(30.0, 300.0)),
                                            appearance=AppearanceSpec(edema_fade_mm=(4.0, 12.0))),
}
