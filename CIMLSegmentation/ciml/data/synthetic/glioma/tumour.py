"""A glioma grown from a seed: it pushes the anatomy aside, then shows its sub-regions.

- Mass effect: a radial push from the seed that fades with distance (a Gaussian in core
  radii, at most half the core radius at the seed); the warp never folds. Tissue near the tumour moves
  outward, ventricles and sulci compress.
- Core (TC): an irregular ellipsoid around the seed. Its outer shell, 1.5-6 mm thick, enhances
  (label 4) around fluid necrosis or solid tumour (label 1); in a share of cases part of the
  shell or all of it stays non-enhancing, as in lower-grade gliomas.
- Edema (label 2): a larger irregular ellipsoid, kept where white matter is (vasogenic edema
  follows the white-matter tracts and spares cortex and CSF) and connected to the core.
- Some cases have a second focus, some none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ciml.data.synthetic.common import Grid, random_rotation, rotated_offsets, smooth_field
from ciml.data.synthetic.glioma.anatomy import Anatomy, partition
from ciml.data.synthetic.glioma.spec import TUMOUR_CLASSES, TUMOUR_LABEL, TumourSpec

_FIELD_BOX_MM = (400.0, 400.0, 400.0)
CLASS_CODE = {name: code for code, name in enumerate(("healthy", *TUMOUR_CLASSES))}


@dataclass(frozen=True)
class Focus:
    """One tumour focus: ``seed`` (mm, ``(3,)``), whole-tumour and core radii (mm)."""

    seed: np.ndarray
    whole_radius: float
    core_radius: float


def _ball_radius(volume_ml: float) -> float:
    return float((3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))


def draw_focus(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, spec: TumourSpec,
               volume_scale: float = 1.0) -> Focus:
    """A seed (in white matter for ``seed_in_white_share`` of tumours, else anywhere in the
    brain, away from its edge) and the radii of a tumour of log-uniform volume."""
    low, high = np.log(spec.whole_volume_ml)
    whole = _ball_radius(float(np.exp(rng.uniform(low, high))) * volume_scale)
    core = whole * float(rng.uniform(*spec.core_share)) ** (1.0 / 3.0)
    depth = ndimage.distance_transform_edt(anatomy.brain, sampling=grid.spacing)
    candidates = depth > min(core, 20.0)
    if rng.uniform() < spec.seed_in_white_share:
        candidates &= anatomy.tissue["white"] > 0.6
    if not candidates.any():
        candidates = anatomy.brain
    places = np.argwhere(candidates)
    index = places[rng.integers(len(places))]
    seed = np.array([float(a.ravel()[i]) for a, i in zip(grid.axes_mm(), index)])
    return Focus(seed, whole, core)


def push(maps: dict[str, np.ndarray], grid: Grid, centre: np.ndarray, amplitude_mm: float,
         reach_mm: float) -> dict[str, np.ndarray]:
    """The maps (``(X, Y, Z)`` on ``grid``) with their content pushed radially away from
    ``centre`` (mm) by ``amplitude_mm * exp(-d^2 / (2 reach_mm^2))`` at distance ``d``.

    Backward warp: the point at ``d`` takes the value from ``max(d - push(d), 0)`` on the same
    ray. That source radius never decreases along a ray while the push's slope stays below 1
    (``amplitude_mm < reach_mm * e^0.5``), so the warp does not fold; the ball it leaves empty
    around the seed (``d < push(d)``) takes the seed's value and is inside the tumour core.
    """
    offsets = [np.broadcast_to(a - np.float32(c), grid.shape) for a, c in zip(grid.axes_mm(), centre)]
    distance = np.sqrt(sum(o * o for o in offsets))
    shift = np.float32(amplitude_mm) * np.exp(-(distance / np.float32(reach_mm)) ** 2 / 2)
    ratio = (np.maximum(distance - shift, 0) / np.maximum(distance, np.float32(1e-6))).astype(np.float32)
    index = [((np.float32(c) + o * ratio - np.float32(orig)) / np.float32(s)).astype(np.float32)
             for c, o, orig, s in zip(centre, offsets, grid.origin, grid.spacing)]
    return {k: ndimage.map_coordinates(v, index, order=1, mode="nearest").astype(np.float32)
            for k, v in maps.items()}


def _irregular_radius(rng: np.random.Generator, grid: Grid, focus: Focus, radius: float,
                      irregularity: float, cell_mm: float, elongation: tuple[float, float]) -> np.ndarray:
    """float32 ``(X, Y, Z)``: the normalised radius of a bumpy rotated ellipsoid (< 1 inside)."""
    radii = radius * rng.uniform(*elongation, size=3)
    radii *= radius / np.prod(radii) ** (1.0 / 3.0)  # keep the volume
    u = rotated_offsets(grid, focus.seed, random_rotation(rng))
    q = np.sqrt(sum((ui / np.float32(r)) ** 2 for ui, r in zip(u, radii)))
    bump = np.clip(smooth_field(rng, grid, cell_mm, _FIELD_BOX_MM), -1, 1)
    return q / (1 + np.float32(irregularity) * bump)


def _connected_to(mask: np.ndarray, core: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` (bool) connected to ``core`` (bool)."""
    labelled, _ = ndimage.label(mask | core)
    keep = np.unique(labelled[core])
    return np.isin(labelled, keep[keep > 0]) & mask


def paint_focus(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, focus: Focus,
                spec: TumourSpec, classes: np.ndarray) -> None:
    """Paint one focus's classes (:data:`CLASS_CODE`) into ``classes`` (uint8 ``(X, Y, Z)``),
    over healthy tissue and edema only."""
    q_core = _irregular_radius(rng, grid, focus, focus.core_radius, spec.irregularity, spec.cell_mm, spec.elongation)
    q_whole = _irregular_radius(rng, grid, focus, focus.whole_radius, spec.edema_irregularity, spec.cell_mm * 1.5,
                                spec.elongation)
    rim = float(rng.triangular(*spec.rim_mm))
    enhancing = rng.uniform() >= spec.non_enhancing_share
    partial = rng.uniform() < spec.partial_rim_share
    inner = "solid" if rng.uniform() < spec.solid_core_share else "fluid"
    brain = anatomy.brain
    core = (q_core < 1) & brain
    if not core.any():  # at least the seed's voxel
        index = tuple(np.clip(np.round((focus.seed - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int),
                              0, np.asarray(grid.shape) - 1))
        core[index] = True
    depth = ndimage.distance_transform_edt(core, sampling=grid.spacing)
    near = ndimage.distance_transform_edt(~core, sampling=grid.spacing) <= spec.edema_near_core_mm
    room = (anatomy.tissue["white"] > spec.edema_needs_white) | near
    edema = _connected_to((q_whole < 1) & brain & room & ~core, core)
    free = np.isin(classes, (CLASS_CODE["healthy"], CLASS_CODE["edema"]))
    classes[edema & free & (classes == CLASS_CODE["healthy"])] = CLASS_CODE["edema"]
    shell = core & (depth <= rim)
    classes[core & free] = CLASS_CODE[inner]
    if enhancing:
        shell_class = np.full(grid.shape, CLASS_CODE["enhancing"], dtype=np.uint8)
        if partial:  # a smooth random part of the shell does not enhance
            side = smooth_field(rng, grid, focus.core_radius, _FIELD_BOX_MM) > rng.uniform(-0.5, 0.5)
            shell_class[side] = CLASS_CODE["solid"]
        classes[shell & free] = shell_class[shell & free]
    else:
        classes[shell & free] = CLASS_CODE["solid"]


def grow(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, spec: TumourSpec) -> tuple[Anatomy, np.ndarray, dict]:
    """Grow the case's tumour(s). Returns the anatomy after the mass effect, the class map
    (uint8 ``(X, Y, Z)``, :data:`CLASS_CODE`) and the drawn settings."""
    classes = np.zeros(grid.shape, dtype=np.uint8)
    if rng.uniform() < spec.tumour_free_share:
        return anatomy, classes, {"foci": []}
    foci = [draw_focus(rng, grid, anatomy, spec)]
    if rng.uniform() < spec.multifocal_share:
        foci.append(draw_focus(rng, grid, anatomy, spec, volume_scale=0.3))
    amplitude = float(rng.uniform(*spec.mass_effect)) * foci[0].core_radius
    reach = float(rng.uniform(*spec.mass_effect_reach)) * foci[0].core_radius
    maps = push({**anatomy.tissue, "brain": anatomy.brain.astype(np.float32)}, grid, foci[0].seed, amplitude, reach)
    brain = maps.pop("brain") >= 0.5
    anatomy = Anatomy(partition(maps, brain), brain)
    for focus in foci:
        paint_focus(rng, grid, anatomy, focus, spec, classes)
    settings = {"foci": [{"seed_mm": f.seed.tolist(), "whole_radius_mm": f.whole_radius,
                          "core_radius_mm": f.core_radius} for f in foci],
                "mass_effect_mm": amplitude, "mass_effect_reach_mm": reach}
    return anatomy, classes, settings


def labels_of(classes: np.ndarray) -> np.ndarray:
    """The BraTS label map (uint8, 0/1/2/4) of a class map of the same shape."""
    lookup = np.zeros(len(CLASS_CODE), dtype=np.uint8)
    for name, code in CLASS_CODE.items():
        lookup[code] = TUMOUR_LABEL.get(name, 0)
    return lookup[classes]
