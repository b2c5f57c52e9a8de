"""What the synthetic tasks share: the case record, grids, smooth random fields, writing.

Every phantom is defined in physical coordinates (mm, centred on the volume), so a given seed
describes the same anatomy at every grid size: ``small`` and ``full`` differ in resolution only.
Arrays are indexed ``(X, Y, Z)``, like the physical axes; SimpleITK's ``(Z, Y, X)`` order is
dealt with only when writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ciml.data.geometry import Geometry
from ciml.data.io import write_image
from ciml.errors import CIMLError
from ciml.io_utils import atomic_directory


@dataclass(frozen=True)
class Grid:
    """A voxel grid centred on the origin of physical space.

    Args:
        shape: voxels along ``(X, Y, Z)``.
        spacing: voxel size in mm along ``(X, Y, Z)``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def origin(self) -> tuple[float, float, float]:
        """Physical position (mm) of voxel ``(0, 0, 0)``, so that the grid is centred on 0."""
        return tuple(-(n - 1) / 2 * s for n, s in zip(self.shape, self.spacing))

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates in mm, shaped ``(X,1,1)``, ``(1,Y,1)``, ``(1,1,Z)``.

        They broadcast against each other to the full ``(X, Y, Z)`` grid without allocating it.
        """
        axes = []
        for axis, (n, s, o) in enumerate(zip(self.shape, self.spacing, self.origin)):
            view = [1, 1, 1]
            view[axis] = n
            axes.append((o + s * np.arange(n, dtype=np.float32)).reshape(view))
        return tuple(axes)


@dataclass
class SyntheticCase:
    """One generated case, in memory.

    Attributes:
        case_id: folder and file-name stem (``<case_id>_<modality>.nii.gz``); no underscores.
        images: modality name -> float32 array ``(X, Y, Z)``, in the task's modality order.
        label: uint8 array ``(X, Y, Z)`` of label values.
        spacing: voxel size in mm along ``(X, Y, Z)``.
        origin: physical position in mm of voxel ``(0, 0, 0)``; the direction is the identity.
        extras: generator-specific ground truth that is not written to disk (e.g. the candidate
            shapes of the ``shapes`` task), for analyses and tests.
    """

    case_id: str
    images: dict[str, np.ndarray]
    label: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    extras: dict[str, Any] = field(default_factory=dict)


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of case ``index`` of a run seeded with ``seed``.

    Seeding by the pair makes each case reproducible on its own (case 7 is the same whether
    one or ten cases are generated) and different from its neighbours.
    """
    return np.random.default_rng([int(seed), int(index)])


def check_case_arguments(index: int, seed: int, size: str, sizes: dict[str, Grid]) -> Grid:
    """Validate the common arguments of a case generator and return the grid of ``size``."""
    if int(index) < 0:
        raise CIMLError(f"case index must be >= 0, got {index}")
    if int(seed) < 0:
        raise CIMLError(f"seed must be >= 0, got {seed}")
    if size not in sizes:
        raise CIMLError(f"size must be one of {', '.join(sizes)}, got {size!r}")
    return sizes[size]


# Uniform cubic B-spline: the mean over positions of the sum of the squared weights of one
# axis is 151/315, so dividing by its cube root-cubed gives a field of unit variance on average.
_BSPLINE_VARIANCE_PER_AXIS = 151.0 / 315.0


def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights ``(4, n)`` of the coarse nodes ``i-1 .. i+2`` at fractions ``t``."""
    t2, t3 = t * t, t * t * t
    return np.stack([
        (1 - t) ** 3 / 6,
        (3 * t3 - 6 * t2 + 4) / 6,
        (-3 * t3 + 3 * t2 + 3 * t + 1) / 6,
        t3 / 6,
    ]).astype(np.float32)


def smooth_field(rng: np.random.Generator, grid: Grid, cell_mm: float,
                 box_mm: tuple[float, float, float]) -> np.ndarray:
    """A smooth random field on ``grid``: float32 ``(X, Y, Z)``, mean 0, variance ~1.

    White noise on a coarse lattice of spacing ``cell_mm`` covering the physical box
    ``box_mm`` (centred on 0, fixed per task so that every grid size samples the same field)
    is interpolated with a cubic B-spline, separably, one axis at a time. ``cell_mm`` is the
    length over which the field decorrelates: the scale of the features it makes.
    """
    coarse_shape = [int(np.ceil(b / cell_mm)) + 4 for b in box_mm]  # +4: spline support
    field_ = rng.standard_normal(coarse_shape, dtype=np.float32)
    for axis, coords in enumerate(grid.axes_mm()):
        # Continuous lattice index; +1 so that node i-1 exists at the box's edge.
        t = (coords.ravel().astype(np.float64) + box_mm[axis] / 2) / cell_mm + 1
        start = np.clip(np.floor(t).astype(np.int64), 1, coarse_shape[axis] - 3)
        weights = _bspline_weights((t - start).astype(np.float32))
        view = [1, 1, 1]
        view[axis] = -1
        field_ = sum(weights[k].reshape(view) * np.take(field_, start + k - 1, axis=axis)
                     for k in range(4))
    return field_ / np.float32(_BSPLINE_VARIANCE_PER_AXIS ** 1.5)


def axis_rotation(angles_deg: np.ndarray) -> np.ndarray:
    """The ``(3, 3)`` rotation by ``angles_deg`` ``(3,)`` about x, then y, then z."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.radians(angles_deg)):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        turn = np.eye(3)
        turn[i, i], turn[i, j], turn[j, i], turn[j, j] = c, -s, s, c
        matrix = turn @ matrix
    return matrix


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-corrected)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotated_offsets(grid: Grid, centre: np.ndarray, rotation: np.ndarray) -> list[np.ndarray]:
    """Coordinates ``(X, Y, Z)`` of every voxel in a frame centred on ``centre`` (mm) whose
    axes are the columns of ``rotation``: three float32 arrays ``(X, Y, Z)``."""
    d = [a - np.float32(c) for a, c in zip(grid.axes_mm(), centre)]
    return [d[0] * np.float32(rotation[0, j]) + d[1] * np.float32(rotation[1, j])
            + d[2] * np.float32(rotation[2, j]) for j in range(3)]


def write_case(case: SyntheticCase, out_dir: str | Path) -> Path:
    """Write ``case`` in the BraTS 2020 layout and return its folder.

    Writes ``out_dir/<case_id>/<case_id>_<modality>.nii.gz`` for every modality and
    ``<case_id>_seg.nii.gz`` for the label map. The folder is assembled under a temporary
    name and renamed into place, so an interrupted run leaves no half-written case; an
    existing non-empty case folder is refused.
    """

    shape = case.label.shape
    grid = Geometry(origin=tuple(float(o) for o in case.origin), spacing=tuple(float(s) for s in case.spacing),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), size=tuple(int(n) for n in shape))
    folder = Path(out_dir) / case.case_id
    with atomic_directory(folder) as tmp:
        for modality, array in case.images.items():
            write_image(array, grid, tmp / f"{case.case_id}_{modality}.nii.gz")
        write_image(case.label, grid, tmp / f"{case.case_id}_seg.nii.gz")
    return folder
