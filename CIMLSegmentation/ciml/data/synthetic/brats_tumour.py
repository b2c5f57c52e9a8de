"""The tumour of the synthetic BraTS phantom, and what each sub-task's primary cannot show.

The three BraTS sub-regions nest: edema (label 2) outermost, an enhancing rim (label 4) around
a necrotic core (label 1). Besides them, each in a random share of cases, the tumour carries
structures that only an auxiliary sequence tells apart (their signal per sequence is
``brats.SIGNAL``), as in real MRI:

- ``faint_edema`` (label 2): edema beyond the FLAIR-bright edema on one side, that FLAIR shows
  as normal tissue (FLAIR under-calls edema); bright in T2 only.
- FLAIR foci away from the tumour, round and FLAIR-bright alike: each is either a
  ``satellite`` edema focus (label 2, bright in T2 too) or a ``flair_artefact`` (label 0, a
  flow artefact: normal in every other sequence).
- ``non_enhancing`` core (label 1): a shell around the enhancing core on one side, which T1ce
  shows exactly as edema; darker than edema in T2.
- ``cyst`` (label 0): a fluid cyst on the core's surface, through the rim into the necrosis:
  dark in T1ce like necrosis, CSF-like in T2 (brightest, homogeneous) and FLAIR (suppressed).
- ``haemorrhage`` (label 1): blood products in the core, bright in T1ce like enhancement and,
  unlike it, in T1 too.

:data:`HIDDEN_FROM_PRIMARY` says, per target, which regions its primary misses and which it
cannot tell apart; :func:`primary_only_ceiling` turns that into the best Dice a model that sees
only the primary could reach on a case.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ciml.data.synthetic.common import Grid, SyntheticCase, random_rotation, rotated_offsets, smooth_field

# Region codes of the region map (extras["regions"]); the label is REGION_LABEL of the region.
REGION_NAMES = ("healthy", "edema", "faint_edema", "satellite", "flair_artefact",
                "non_enhancing", "enhancing", "necrosis", "cyst", "haemorrhage")
REGION = {name: code for code, name in enumerate(REGION_NAMES)}
REGION_LABEL = {"healthy": 0, "edema": 2, "faint_edema": 2, "satellite": 2, "flair_artefact": 0,
                "non_enhancing": 1, "enhancing": 4, "necrosis": 1, "cyst": 0, "haemorrhage": 1}
TARGET_LABELS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}  # as the `brats` card's targets


@dataclass(frozen=True)
class HiddenFromPrimary:
    """What a target's primary sequence cannot show.

    A primary-only reader knows every region that its primary shows (or encloses) except:
    ``unseen`` regions, which the primary shows exactly as the tissue around them (the reader
    leaves them out), and each group of ``lookalikes``, regions the primary shows identically
    (the reader must take or leave the group whole).
    """

    primary: str
    unseen: tuple[str, ...]
    lookalikes: tuple[tuple[str, ...], ...]


HIDDEN_FROM_PRIMARY = {
    "WT": HiddenFromPrimary("flair", ("faint_edema",), (("satellite", "flair_artefact"),)),
    "TC": HiddenFromPrimary("t1ce", ("non_enhancing",), (("necrosis", "cyst"),)),
    "ET": HiddenFromPrimary("t1ce", (), (("enhancing", "haemorrhage"),)),
}


@dataclass(frozen=True)
class TumourSpec:
    """The tumour's parameters. Lengths in mm; ``(low, high)`` ranges are drawn uniformly per
    case; a ``*_share`` is the probability that a case has that structure. Tumour-relative
    sizes are on the normalised tumour radius (1 at the edema's ellipsoid)."""

    tumour_radius_mm: tuple[float, float] = (14.0, 30.0)   # of the whole tumour (edema)
    tumour_elongation: tuple[float, float] = (0.75, 1.25)  # per-axis factor on the radius
    tumour_centre_depth: tuple[float, float] = (0.0, 0.7)  # on the brain radius: anywhere
    core_fraction: tuple[float, float] = (0.40, 0.65)      # tumour core radius / whole
    necrosis_fraction: tuple[float, float] = (0.35, 0.65)  # necrosis radius / core
    core_irregularity: float = 0.20    # relative radial perturbation of the core
    edema_irregularity: float = 0.35   # of the edema (more finger-like)
    tumour_cell_mm: float = 12.0
    faint_edema_share: float = 0.6
    faint_edema_extent: tuple[float, float] = (1.10, 1.30)   # outer radius / the edema's
    foci_share: float = 0.7
    foci_count: tuple[int, int] = (2, 5)                     # inclusive
    focus_radius_mm: tuple[float, float] = (7.0, 12.0)
    focus_depth: tuple[float, float] = (0.2, 0.75)           # on the brain radius
    artefact_probability: float = 0.5  # a focus is an artefact, else a satellite
    focus_tries: int = 20              # positions tried per focus, away from the tumour
    non_enhancing_share: float = 0.6
    non_enhancing_extent: tuple[float, float] = (1.10, 1.30)  # outer radius / the core's
    cyst_share: float = 0.6
    cyst_radius: tuple[float, float] = (0.5, 0.8)             # / core radius; on its surface
    haemorrhage_share: float = 0.6
    haemorrhage_offset: float = 0.5    # its centre, in core radii from the tumour centre
    haemorrhage_radius: tuple[float, float] = (0.5, 0.8)      # / core radius


TUMOUR = TumourSpec()


def _unit(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random unit vector ``(3,)``."""
    direction = rng.standard_normal(3)
    return direction / np.linalg.norm(direction)


class _Optional(NamedTuple):
    """A structure that a share of cases has: whether this one does, its relative size and
    the direction ``(3,)`` it lies in from the tumour centre (tumour frame)."""

    present: bool
    size: float
    direction: np.ndarray


def _draw_optional(rng: np.random.Generator, share: float, size: tuple[float, float]) -> _Optional:
    """Draw an optional structure; as many numbers are drawn whether it is present or not, so
    that the rest of the case is the same either way."""
    return _Optional(bool(rng.uniform() < share), float(rng.uniform(*size)), _unit(rng))


def _ball(v: list[np.ndarray], centre: np.ndarray, radius: float) -> np.ndarray:
    """Boolean ``(X, Y, Z)``: within ``radius`` of ``centre`` (both in the frame of ``v``)."""
    return sum((vi - np.float32(c)) ** 2 for vi, c in zip(v, centre)) < np.float32(radius) ** 2


def _half_shell(v: list[np.ndarray], q: np.ndarray, inner: np.ndarray, extent: float,
                side: np.ndarray) -> np.ndarray:
    """Boolean ``(X, Y, Z)``: between radius ``inner`` (``(X, Y, Z)``) and ``extent`` times it,
    on the side of the tumour centre that ``side`` ``(3,)`` points to."""
    facing = sum(vi * np.float32(s) for vi, s in zip(v, side)) > 0
    return (q >= inner) & (q < inner * np.float32(extent)) & facing


def _tumour_frame(rng: np.random.Generator, grid: Grid, spec: TumourSpec, semi_axes: np.ndarray,
                  head_rotation: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Draw the tumour's ellipsoid: its centre (mm, scanner frame, ``(3,)``), the normalised
    tumour coordinates (three float32 ``(X, Y, Z)``, 1 on the ellipsoid) and its largest
    radius (mm)."""
    centre = head_rotation @ (_unit(rng) * rng.uniform(*spec.tumour_centre_depth) * semi_axes)
    radii = rng.uniform(*spec.tumour_radius_mm) * rng.uniform(*spec.tumour_elongation, size=3)
    u = rotated_offsets(grid, centre, random_rotation(rng))
    return centre, [ui / np.float32(r) for ui, r in zip(u, radii)], float(radii.max())


def _draw_foci(rng: np.random.Generator, spec: TumourSpec, semi_axes: np.ndarray,
               head_rotation: np.ndarray, keep_out: tuple[np.ndarray, float]) -> list[tuple]:
    """Draw the FLAIR foci: ``(centre (3,) mm, radius mm, is_artefact)`` each, centred in the
    brain at least ``keep_out = (centre, radius)`` plus their own radius away from the tumour.
    As many numbers are drawn whatever the share, so that the rest of the case stays the same."""
    present = rng.uniform() < spec.foci_share
    count = int(rng.integers(spec.foci_count[0], spec.foci_count[1] + 1))
    foci = []
    for number in range(spec.foci_count[1]):
        radius = rng.uniform(*spec.focus_radius_mm)
        is_artefact = rng.uniform() < spec.artefact_probability
        for _ in range(spec.focus_tries):
            centre = head_rotation @ (_unit(rng) * rng.uniform(*spec.focus_depth) * semi_axes)
            if np.linalg.norm(centre - keep_out[0]) > keep_out[1] + radius:
                if present and number < count:
                    foci.append((centre, radius, is_artefact))
                break
    return foci


def tumour_regions(rng: np.random.Generator, grid: Grid, spec: TumourSpec, semi_axes: np.ndarray,
                   head_rotation: np.ndarray, brain: np.ndarray, field_box_mm: tuple) -> np.ndarray:
    """The region map, uint8 ``(X, Y, Z)`` of :data:`REGION` codes (0 outside the tumour).

    Args:
        semi_axes: the brain's semi-axes (mm) in its own frame, ``(3,)``.
        head_rotation: ``(3, 3)``, the brain's axes (columns) in scanner coordinates.
        brain: boolean ``(X, Y, Z)`` brain mask; nothing is painted outside it.
        field_box_mm: the box of the task's smooth fields (see ``common.smooth_field``).
    """
    centre, v, largest_radius = _tumour_frame(rng, grid, spec, semi_axes, head_rotation)
    q = np.sqrt(sum(vi * vi for vi in v))
    # Smooth radial perturbations, clipped so that the regions stay in one piece (a bounded
    # bump on the radius, not islands where the noise happens to be low).
    core_bump, edema_bump = (1 + np.float32(a) * np.clip(
        smooth_field(rng, grid, spec.tumour_cell_mm, field_box_mm), -1, 1)
        for a in (spec.core_irregularity, spec.edema_irregularity))
    core = float(rng.uniform(*spec.core_fraction))
    necrosis = core * float(rng.uniform(*spec.necrosis_fraction))
    faint = _draw_optional(rng, spec.faint_edema_share, spec.faint_edema_extent)
    reach = largest_radius * (1 + spec.edema_irregularity) * spec.faint_edema_extent[1]
    foci = _draw_foci(rng, spec, semi_axes, head_rotation, (centre, reach))
    shell = _draw_optional(rng, spec.non_enhancing_share, spec.non_enhancing_extent)
    cyst = _draw_optional(rng, spec.cyst_share, spec.cyst_radius)
    blood = _draw_optional(rng, spec.haemorrhage_share, spec.haemorrhage_radius)

    region = np.zeros(grid.shape, dtype=np.uint8)

    def paint(name: str, mask: np.ndarray, over: tuple[str, ...] | None = None) -> None:
        if over is not None:
            mask = mask & np.isin(region, [REGION[o] for o in over])
        region[mask] = REGION[name]

    # Outermost first, so that the inner regions nest inside the outer ones; the necrosis
    # shares the core's bump, so the enhancing rim keeps a similar thickness.
    paint("edema", q < edema_bump)
    if faint.present:
        paint("faint_edema", _half_shell(v, q, edema_bump, faint.size, faint.direction), over=("healthy",))
    for focus_centre, radius, is_artefact in foci:
        paint("flair_artefact" if is_artefact else "satellite",
              _ball(grid.axes_mm(), focus_centre, radius), over=("healthy",))
    if shell.present:
        paint("non_enhancing", _half_shell(v, q, core * core_bump, shell.size, shell.direction),
              over=("edema",))
    paint("enhancing", q < core * core_bump)
    paint("necrosis", q < necrosis * core_bump)
    if blood.present:
        paint("haemorrhage", _ball(v, blood.direction * core * spec.haemorrhage_offset, blood.size * core),
              over=("enhancing", "necrosis"))
    if cyst.present:  # carved from the rim and the edema, so it opens into the necrosis
        paint("cyst", _ball(v, cyst.direction * core, cyst.size * core),
              over=("edema", "non_enhancing", "enhancing"))
    region[~brain] = REGION["healthy"]
    return region


def labels_of(region: np.ndarray) -> np.ndarray:
    """The BraTS label map uint8 ``(X, Y, Z)`` of a region map of the same shape."""
    lookup = np.array([REGION_LABEL[name] for name in REGION_NAMES], dtype=np.uint8)
    return lookup[region]


def hidden_from_primary(region: np.ndarray) -> dict[str, dict]:
    """Per target, the masks that its primary cannot show (from :data:`HIDDEN_FROM_PRIMARY`):
    ``{"unseen": bool (X, Y, Z), "lookalikes": [bool (X, Y, Z), ...]}``."""
    def mask(names):
        return np.isin(region, [REGION[name] for name in names])
    return {target: {"unseen": mask(hidden.unseen),
                     "lookalikes": [mask(group) for group in hidden.lookalikes]}
            for target, hidden in HIDDEN_FROM_PRIMARY.items()}


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total if total else 1.0


def primary_only_ceiling(case: SyntheticCase) -> dict[str, float]:
    """The best Dice per target (``WT``, ``TC``, ``ET``) of a model that sees only the target's
    primary: the Dice of the oracle mask such a reader would draw.

    The reader gets every voxel right except those of ``case.extras["hidden_from_primary"]``:
    it leaves out the ``unseen`` voxels (they look like background to it) and takes or leaves
    each ``lookalikes`` group whole, whichever choice (over all groups together) maximises
    Dice. Works on any case whose label and extras have these masks (``(X, Y, Z)``).
    """
    ceilings = {}
    for target, hidden in case.extras["hidden_from_primary"].items():
        truth = np.isin(case.label, TARGET_LABELS[target])
        groups = hidden["lookalikes"]
        known = truth & ~np.logical_or.reduce([hidden["unseen"], *groups])
        ceilings[target] = max(
            _dice(np.logical_or.reduce([known, *(g for g, take in zip(groups, choice) if take)]), truth)
            for choice in itertools.product((False, True), repeat=len(groups)))
    return ceilings
