"""The `shapes` task: a label that can only be found with complementary information.

The project's own construction (the CIML paper's ShapeComposition recipe is not available):

- ``shapes`` (the primary) shows every *candidate*: 4 to 8 non-touching spheres, ellipsoids,
  cubes and blobs of random size and brightness, in noise.
- ``cue`` (complementary) marks which candidates are *targets*: a blurred spot at the centre
  of each target, nothing at the others. The spot is smaller than the shape, has no edge and
  a width drawn independently of the shape's size, so the cue says *which* shapes but not
  *where their boundaries are*.
- ``echo`` (redundant) repeats the primary with another gain and its own noise.

The label (value 1) is the union of the targets: a uniformly random half of the candidates,
drawn independently of kind, size and brightness, so the primary alone cannot tell a target
from another candidate. :func:`primary_only_oracle_dice` measures the best Dice such a model
can reach (about 2/3; derivation in ``docs/sample-data.md``), :func:`cue_predictor_dice` shows
that the primary plus the cue reaches ~1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ciml.data.synthetic.common import (
    Grid,
    SyntheticCase,
    case_rng,
    check_case_arguments,
    random_rotation,
    rotated_offsets,
    smooth_field,
)

MODALITIES = ("shapes", "cue", "echo")  # as in the `shapes` preset
CASE_PREFIX = "shapes"
TARGET = 1
SHAPE_KINDS = ("sphere", "ellipsoid", "cube", "blob")
# Expected Dice of predicting every candidate is at most 2/3 per case (Jensen's inequality,
# docs/sample-data.md); no other choice of candidates does better on the generated cases.
PRIMARY_ONLY_DICE_CEILING = 2.0 / 3.0

# Same 128 mm field of view at both sizes; `small` fits the preset's 64^3 patch exactly.
SIZES: dict[str, Grid] = {
    "small": Grid(shape=(64, 64, 64), spacing=(2.0, 2.0, 2.0)),
    "full": Grid(shape=(128, 128, 128), spacing=(1.0, 1.0, 1.0)),
}
_FIELD_BOX_MM = (136.0, 136.0, 136.0)


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of the shapes task (lengths in mm, ranges drawn uniformly per case/shape).

    A shape's nominal radius ``r`` sets its size: sphere radius ``r``; ellipsoid semi-axes
    ``r`` times ``ellipsoid_axes``; cube half-side ``cube_half_side * r``; blob radius ``r``
    with a relative bumpiness ``blob_wobble``.
    """

    candidates: tuple[int, int] = (4, 8)      # inclusive
    radius_mm: tuple[float, float] = (8.0, 16.0)
    ellipsoid_axes: tuple[float, float] = (0.55, 1.0)
    cube_half_side: float = 0.8
    blob_wobble: float = 0.25
    gap_mm: float = 4.0                       # least distance between two shapes' extents
    brightness: tuple[float, float] = (0.4, 1.0)
    noise_sigma: float = 0.05                 # Gaussian noise of the primary
    cue_spot_mm: tuple[float, float] = (2.5, 4.0)  # Gaussian sigma of a cue spot
    cue_amplitude: tuple[float, float] = (0.8, 1.0)
    cue_noise_sigma: float = 0.03
    echo_gain: tuple[float, float] = (0.6, 1.4)
    echo_noise_sigma: float = 0.08
    placement_tries: int = 500


SHAPES = ShapesSpec()


@dataclass(frozen=True)
class _Candidate:
    kind: str
    centre: np.ndarray      # mm
    radius: float           # nominal radius r, mm
    outer_radius: float     # radius of a sphere that contains the shape, mm


def _draw_candidate(rng: np.random.Generator, spec: ShapesSpec, half_fov: np.ndarray,
                    placed: list[_Candidate]) -> _Candidate | None:
    kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
    r = rng.uniform(*spec.radius_mm)
    outer = {
        "sphere": r,
        "ellipsoid": r,
        "cube": spec.cube_half_side * r * np.sqrt(3.0),
        "blob": r * (1 + spec.blob_wobble),
    }[kind]
    for _ in range(spec.placement_tries):
        centre = rng.uniform(-(half_fov - outer), half_fov - outer)
        if all(np.linalg.norm(centre - c.centre) >= outer + c.outer_radius + spec.gap_mm
               for c in placed):
            return _Candidate(kind, centre, r, outer)
    return None


def _candidate_mask(rng: np.random.Generator, grid: Grid, spec: ShapesSpec,
                    c: _Candidate) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` mask of one candidate."""
    u = rotated_offsets(grid, c.centre, random_rotation(rng))
    if c.kind == "sphere":
        return sum(ui * ui for ui in u) < np.float32(c.radius ** 2)
    if c.kind == "ellipsoid":
        axes = c.radius * np.concatenate([[1.0], rng.uniform(*spec.ellipsoid_axes, size=2)])
        return sum((ui / np.float32(a)) ** 2 for ui, a in zip(u, axes)) < 1
    if c.kind == "cube":
        half = np.float32(spec.cube_half_side * c.radius)
        return np.maximum(np.maximum(np.abs(u[0]), np.abs(u[1])), np.abs(u[2])) < half
    wobble = np.clip(smooth_field(rng, grid, c.radius, _FIELD_BOX_MM), -1, 1)
    radius = np.float32(c.radius) * (1 + np.float32(spec.blob_wobble) * wobble)
    return np.sqrt(sum(ui * ui for ui in u)) < radius


def shapes_case(index: int, seed: int = 0, size: str = "small",
                spec: ShapesSpec = SHAPES) -> SyntheticCase:
    """Generate case ``index`` of the shapes task.

    Args:
        index: case number (>= 0); the case id is ``shapes-<index:03d>``.
        seed: run seed; the case depends only on ``(seed, index)``.
        size: ``small`` (64^3 at 2 mm) or ``full`` (128^3 at 1 mm), both 128 mm across.
        spec: the task's parameters.

    Returns:
        The case: images shapes, cue, echo as float32 ``(X, Y, Z)``; label uint8 ``(X, Y, Z)``
        in {0, 1}. ``extras["candidates"]`` is a uint8 ``(X, Y, Z)`` map numbering the
        candidates 1..n, ``extras["targets"]`` the tuple of target numbers.
    """
    grid = check_case_arguments(index, seed, size, SIZES)
    rng = case_rng(seed, index)
    half_fov = np.asarray(grid.shape) * np.asarray(grid.spacing) / 2

    placed: list[_Candidate] = []
    for _ in range(rng.integers(spec.candidates[0], spec.candidates[1] + 1)):
        candidate = _draw_candidate(rng, spec, half_fov, placed)
        if candidate is not None:
            placed.append(candidate)
    n = len(placed)
    # Half the candidates are targets (odd n: either rounding, equally likely); never none.
    n_targets = max(1, n // 2 + (int(rng.integers(2)) if n % 2 else 0))
    targets = tuple(sorted(int(t) + 1 for t in rng.choice(n, size=n_targets, replace=False)))

    candidates = np.zeros(grid.shape, dtype=np.uint8)
    primary = np.zeros(grid.shape, dtype=np.float32)
    cue = np.zeros(grid.shape, dtype=np.float32)
    x, y, z = grid.axes_mm()
    for number, c in enumerate(placed, start=1):
        mask = _candidate_mask(rng, grid, spec, c)
        candidates[mask] = number
        primary[mask] = rng.uniform(*spec.brightness)
        if number in targets:
            sigma = rng.uniform(*spec.cue_spot_mm)
            d2 = (x - np.float32(c.centre[0])) ** 2 + (y - np.float32(c.centre[1])) ** 2 \
                + (z - np.float32(c.centre[2])) ** 2
            cue += np.float32(rng.uniform(*spec.cue_amplitude)) * np.exp(
                d2 / np.float32(-2 * sigma * sigma))

    def noise(sigma: float) -> np.ndarray:
        return np.float32(sigma) * rng.standard_normal(grid.shape, dtype=np.float32)

    images = {
        "shapes": primary + noise(spec.noise_sigma),
        "cue": cue + noise(spec.cue_noise_sigma),
        "echo": np.float32(rng.uniform(*spec.echo_gain)) * primary + noise(spec.echo_noise_sigma),
    }
    label = np.isin(candidates, targets).astype(np.uint8)
    return SyntheticCase(
        case_id=f"{CASE_PREFIX}-{index:03d}", images=images, label=label,
        spacing=grid.spacing, origin=grid.origin,
        extras={"candidates": candidates, "targets": targets},
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 1.0


def _target_count_probabilities(n: int) -> dict[int, float]:
    """P(number of targets) given ``n`` candidates, as :func:`shapes_case` draws it."""
    if n % 2 == 0:
        return {n // 2: 1.0}
    return {max(1, n // 2): 0.5, n // 2 + 1: 0.5}


def primary_only_oracle_choice(volumes: np.ndarray) -> tuple[np.ndarray, float]:
    """The Bayes-optimal primary-only prediction, given the candidates' volumes.

    A model that sees only the primary knows (at best) every candidate exactly, but each set
    of targets of the right size is equally likely to it. Among all subsets ``S`` of the
    candidates it predicts the one maximising the expected Dice ``E_T[2|S n T| / (|S|+|T|)]``.

    Args:
        volumes: ``(n,)`` candidate volumes (voxels).

    Returns:
        ``(chosen, expected_dice)``: a boolean ``(n,)`` mask of the chosen candidates and the
        expected Dice of that choice.
    """
    volumes = np.asarray(volumes, dtype=np.float64)
    n = len(volumes)
    subsets = np.array(list(itertools.product((0.0, 1.0), repeat=n))[1:])  # (2^n - 1, n)
    expected = np.zeros(len(subsets))
    for k, p_k in _target_count_probabilities(n).items():
        combinations = list(itertools.combinations(range(n), k))
        target_sets = np.zeros((len(combinations), n))                  # (C(n, k), n)
        for row, combination in enumerate(combinations):
            target_sets[row, list(combination)] = 1.0
        overlap = (subsets * volumes) @ target_sets.T                     # |S n T|
        sizes = (subsets @ volumes)[:, None] + (target_sets @ volumes)[None, :]
        expected += p_k * (2 * overlap / sizes).mean(axis=1)
    best = int(expected.argmax())
    return subsets[best].astype(bool), float(expected[best])


def primary_only_oracle_dice(case: SyntheticCase) -> float:
    """Dice against the label of the best prediction made without the cue (see
    :func:`primary_only_oracle_choice`); an upper bound for any primary-only model."""
    candidates = case.extras["candidates"]
    n = int(candidates.max())
    volumes = np.bincount(candidates.ravel(), minlength=n + 1)[1:]
    chosen, _ = primary_only_oracle_choice(volumes)
    prediction = np.isin(candidates, np.flatnonzero(chosen) + 1)
    return _dice(prediction, case.label > 0)


def measure_primary_only_ceiling(n_cases: int, seed: int = 0, size: str = "small",
                                 spec: ShapesSpec = SHAPES) -> dict[str, float]:
    """The primary-only oracle over cases ``0 .. n_cases - 1``.

    Returns:
        ``mean_dice`` and ``max_dice``: the oracle's realised Dice over the cases;
        ``mean_expected_dice``: its expected Dice (over the draw of the targets) per case,
        averaged; ``all_candidates_share``: the fraction of cases where its best choice is
        every candidate.
    """
    realised, expected, chose_all = [], [], 0
    for index in range(n_cases):
        case = shapes_case(index, seed=seed, size=size, spec=spec)
        candidates = case.extras["candidates"]
        volumes = np.bincount(candidates.ravel(), minlength=int(candidates.max()) + 1)[1:]
        chosen, expected_dice = primary_only_oracle_choice(volumes)
        realised.append(primary_only_oracle_dice(case))
        expected.append(expected_dice)
        chose_all += bool(chosen.all())
    return {"mean_dice": float(np.mean(realised)), "max_dice": float(np.max(realised)),
            "mean_expected_dice": float(np.mean(expected)),
            "all_candidates_share": chose_all / n_cases}


def cue_predictor_dice(case: SyntheticCase, primary_threshold: float = 0.2,
                       cue_threshold: float = 0.3) -> float:
    """Dice of a simple rule that reads the images: the connected components of the
    thresholded primary that hold a voxel whose cue exceeds ``cue_threshold`` (a spot's
    peak; the cue's noise stays far below it). With the cue, ~1."""

    foreground = (case.images["shapes"] > primary_threshold).astype(np.uint8)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(foreground)))
    marked = np.unique(components[case.images["cue"] > cue_threshold])
    prediction = np.isin(components, marked[marked > 0])
    return _dice(prediction, case.label > 0)
