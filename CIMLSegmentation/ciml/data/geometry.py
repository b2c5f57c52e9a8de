"""The physical grid of an image, and resampling images from one grid onto another.

A grid (``Geometry``) is what SimpleITK calls the image information: origin (the physical
position of the centre of voxel 0, in mm, LPS), spacing (mm), direction cosines (row-major
3x3) and size (voxels). Arrays in ``ciml`` are indexed ``[x, y, z]`` like SimpleITK indices,
the transpose of ``sitk.GetArrayFromImage``. Outputs are always written on the reference
modality's grid, so that they overlay the input exactly in Slicer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ciml.data.errors import DataError

# Two grids are "the same" when they differ by less than these, which absorbs the float32
# rounding of NIfTI headers (qform/sform are stored in single precision).
SPACING_RTOL = 1e-4
ORIGIN_ATOL_VOXELS = 1e-3  # in units of the voxel spacing
DIRECTION_ATOL = 1e-4

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


@dataclass(frozen=True)
class Geometry:
    """An image grid: origin, spacing, direction and size, all in SimpleITK's conventions.

    Args:
        origin: physical position (mm) of the centre of the first voxel, one value per axis.
        spacing: voxel size in mm, one value per axis.
        direction: direction cosines, row-major (``dim * dim`` values).
        size: voxels per axis.
    """

    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    size: tuple[int, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """The grid of a SimpleITK image."""
        return cls(origin=tuple(float(v) for v in image.GetOrigin()),
                   spacing=tuple(float(v) for v in image.GetSpacing()),
                   direction=tuple(float(v) for v in image.GetDirection()),
                   size=tuple(int(v) for v in image.GetSize()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        return cls(origin=tuple(map(float, data["origin"])), spacing=tuple(map(float, data["spacing"])),
                   direction=tuple(map(float, data["direction"])), size=tuple(map(int, data["size"])))

    def to_dict(self) -> dict[str, list]:
        """Plain JSON-serialisable form (for reports and metadata)."""
        return {"origin": list(self.origin), "spacing": list(self.spacing),
                "direction": list(self.direction), "size": list(self.size)}

    @property
    def dimension(self) -> int:
        return len(self.size)

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set this grid's origin, spacing and direction on ``image`` (same size), in place."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} does not match the grid size {self.size}")
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def blank(self, pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
        """An empty image on this grid (the reference of a resampling)."""
        return self.apply_to(sitk.Image(list(self.size), pixel_type))

    def corners(self) -> np.ndarray:
        """Physical positions (mm) of the outer corners of the grid's voxels, shape (2**dim, dim).

        The outer faces of the voxels lie half a voxel outside the first and last voxel centres.
        """
        direction = np.asarray(self.direction).reshape(self.dimension, self.dimension)
        low, high = -0.5, np.asarray(self.size) - 0.5
        corners = np.array(list(itertools.product(*[(low, h) for h in high])))
        return np.asarray(self.origin) + (corners * np.asarray(self.spacing)) @ direction.T

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned physical bounding box (min corner, max corner) in mm."""
        corners = self.corners()
        return corners.min(axis=0), corners.max(axis=0)

    def overlap_fraction(self, other: Geometry) -> float:
        """Fraction of this grid's bounding box that lies inside ``other``'s (0 = disjoint)."""
        (lo_a, hi_a), (lo_b, hi_b) = self.bounds(), other.bounds()
        common = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0.0, None)
        return float(np.prod(common) / np.prod(hi_a - lo_a))

    def differences(self, other: Geometry) -> list[str]:
        """What differs between two grids, as short phrases; empty when they are the same grid."""
        out = []
        if self.size != other.size:
            out.append(f"size {list(self.size)} vs {list(other.size)}")
        if not np.allclose(self.spacing, other.spacing, rtol=SPACING_RTOL, atol=0):
            out.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)} mm")
        tol = ORIGIN_ATOL_VOXELS * min(min(self.spacing), min(other.spacing))
        if not np.allclose(self.origin, other.origin, rtol=0, atol=tol):
            out.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)} mm")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=DIRECTION_ATOL):
            out.append(f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}")
        return out

    def same_grid(self, other: Geometry) -> bool:
        return not self.differences(other)

    def with_spacing(self, spacing: Sequence[float] | None) -> Geometry:
        """The grid covering the same physical box at another spacing (``None``: this grid).

        The outer corner of the first voxel stays in place and the size is rounded, so the
        physical extent is kept to within half a new voxel; the direction is unchanged.
        """
        if spacing is None or np.allclose(spacing, self.spacing, rtol=SPACING_RTOL, atol=0):
            return self
        old, new = np.asarray(self.spacing), np.asarray(spacing, dtype=float)
        size = np.maximum(1, np.round(np.asarray(self.size) * old / new)).astype(int)
        direction = np.asarray(self.direction).reshape(self.dimension, self.dimension)
        origin = np.asarray(self.origin) + direction @ ((new - old) / 2.0)
        return Geometry(origin=tuple(map(float, origin)), spacing=tuple(map(float, new)),
                        direction=self.direction, size=tuple(map(int, size)))


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def nonzero_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s true voxels, one slice per axis; ``None`` when there are none.

    One ``any`` per axis: six times faster than ``ndimage.find_objects`` on a BraTS-sized mask
    (which labels every voxel first), and segmenting a case asks for a dozen boxes.
    """
    hits = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            for axis in range(mask.ndim)]
    return None if len(hits[0]) == 0 else tuple(slice(int(h[0]), int(h[-1]) + 1) for h in hits)


def resample(image: sitk.Image, grid: Geometry, interpolation: str = "linear",
             default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``grid`` by physical position (identity transform).

    Args:
        image: the image to resample; keeps its pixel type.
        grid: the target grid.
        interpolation: ``linear`` for intensities, ``nearest`` for label maps.
        default_value: value of voxels of ``grid`` that fall outside ``image``.
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATORS)}, got {interpolation!r}")
    if Geometry.of(image).same_grid(grid):
        return image
    return sitk.Resample(image, grid.blank(), sitk.Transform(), INTERPOLATORS[interpolation],
                         float(default_value), image.GetPixelID())


def check_overlap(grid: Geometry, reference: Geometry, what: str, reference_what: str) -> float:
    """Refuse two grids whose physical bounding boxes do not meet; return the overlap fraction.

    Args:
        grid: the grid of the image being brought onto ``reference``.
        reference: the reference grid.
        what, reference_what: names of the two images for the message (modality and path).

    Returns:
        The fraction of ``reference``'s box covered by ``grid``'s, in (0, 1].
    """
    covered = reference.overlap_fraction(grid)
    if covered <= 0.0:
        lo, hi = grid.bounds()
        rlo, rhi = reference.bounds()
        raise DataError(what, f"does not overlap the reference {reference_what} in physical space "
                              f"(its box {_fmt(lo)}..{_fmt(hi)} mm, the reference's "
                              f"{_fmt(rlo)}..{_fmt(rhi)} mm); are they images of the same patient "
                              "in the same coordinate system?")
    return covered


def alignment_warnings(grid: Geometry, reference: Geometry, what: str, reference_what: str,
                       interpolation: str = "linear", default_value: float = 0.0) -> list[str]:
    """Check that an image can be brought onto the reference grid and say what that involves.

    Refuses (:class:`DataError`) a grid that does not overlap the reference at all. When the
    grids differ, warns that the image is resampled, assuming co-registration, and warns when
    part of the reference is not covered (those voxels get ``default_value``).

    Returns:
        Plain sentences, empty when the grids are the same; callers put them in their report
        (``report.json``) or log them. A returned list, rather than Python ``warnings``, so that
        they reach the user whatever the warning filters.
    """
    differences = grid.differences(reference)
    if not differences:
        return []
    covered = check_overlap(grid, reference, what, reference_what)
    warnings = [f"{what}: grid differs from the reference {reference_what} ({'; '.join(differences)}); "
                f"resampled onto the reference grid ({interpolation} interpolation), assuming the "
                "images are co-registered"]
    if covered < 1.0 - SPACING_RTOL:
        warnings.append(f"{what}: covers only {100 * covered:.0f}% of the reference {reference_what}; "
                        f"voxels outside it are filled with {default_value:g}")
    return warnings


def align(image: sitk.Image, reference: Geometry, what: str, reference_what: str,
          interpolation: str = "linear", default_value: float = 0.0) -> tuple[sitk.Image, list[str]]:
    """Bring an image onto the reference grid: ``(resampled image, warnings)``.

    See :func:`alignment_warnings` for the checks and the warnings.
    """
    warnings = alignment_warnings(Geometry.of(image), reference, what, reference_what,
                                  interpolation, default_value)
    return resample(image, reference, interpolation, default_value), warnings
