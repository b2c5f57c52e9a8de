"""Linear resampling one axis at a time gives SimpleITK's values, and steps aside where it cannot."""

import numpy as np
import pytest
import SimpleITK as sitk

from ciml.data.case import regrid, sitk_regrid
from ciml.data.geometry import Geometry
from ciml.data.io import array_to_image, image_to_array
from ciml.data.separable import linear_regrid, shares_direction

LPS_FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def _rotation(angle: float) -> tuple[float, ...]:
    c, s = np.cos(angle), np.sin(angle)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def _working_grid(reference: Geometry, shift_voxels: tuple[float, ...], size: tuple[int, ...]) -> Geometry:
    """A 2.5 mm grid shifted against the reference (a foreground crop, off the voxel lattice)."""
    coarse = reference.with_spacing((2.5,) * reference.dimension)
    direction = np.asarray(reference.direction).reshape(reference.dimension, reference.dimension)
    origin = np.asarray(coarse.origin) + direction @ (np.asarray(shift_voxels) * 2.5)
    return Geometry(tuple(origin), coarse.spacing, coarse.direction, size)


@pytest.mark.parametrize("direction", [LPS_FLIPPED, _rotation(0.3)])
def test_equals_sitk_onto_the_reference_grid(direction):
    reference = Geometry((10.0, -40.0, 3.0), (1.0, 1.2, 1.5), direction, (60, 50, 40))
    working = _working_grid(reference, (2.13, -1.37, 3.71), (20, 23, 14))
    values = np.random.default_rng(0).random((3, *working.size), dtype=np.float32)
    expected = sitk_regrid(values, working, reference)
    got = linear_regrid(values, working, reference)
    assert got.shape == expected.shape == (3, *reference.size)
    assert np.abs(got - expected).max() < 1e-5
    # the same voxels fall outside the working grid (0), inside as well as beyond its edges
    assert np.array_equal(got == 0, expected == 0)
    assert 0 < (expected == 0).mean() < 1


def test_equals_sitk_downsampling_and_in_two_dimensions():
    fine = Geometry((0.0, 0.0), (0.7, 0.9), (1.0, 0.0, 0.0, 1.0), (41, 37))
    coarse = Geometry((1.3, -2.1), (2.0, 1.7), (1.0, 0.0, 0.0, 1.0), (15, 22))
    values = np.random.default_rng(1).normal(size=(2, *fine.size)).astype(np.float32)
    assert np.abs(linear_regrid(values, fine, coarse) - sitk_regrid(values, fine, coarse)).max() < 1e-5


def test_grids_that_do_not_meet_give_zeros():
    source = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), LPS_FLIPPED, (8, 8, 8))
    far = Geometry((500.0, 0.0, 0.0), (1.0, 1.0, 1.0), LPS_FLIPPED, (8, 8, 8))
    assert not linear_regrid(np.ones((1, 8, 8, 8), np.float32), source, far).any()


def test_regrid_takes_sitk_where_directions_differ():
    reference = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), _rotation(0.0), (30, 30, 20))
    tilted = Geometry((1.0, 1.0, 1.0), (2.0, 2.0, 2.0), _rotation(0.05), (12, 12, 8))
    assert not shares_direction(tilted, reference)
    values = np.random.default_rng(2).random((2, *tilted.size), dtype=np.float32)
    with pytest.raises(ValueError, match="same direction"):
        linear_regrid(values, tilted, reference)
    assert np.array_equal(regrid(values, tilted, reference), sitk_regrid(values, tilted, reference))


def test_regrid_uses_it_for_linear_and_keeps_nearest_on_sitk():
    reference = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), LPS_FLIPPED, (30, 26, 20))
    working = _working_grid(reference, (0.4, 0.2, 0.1), (10, 9, 7))
    values = np.random.default_rng(3).random((2, *working.size), dtype=np.float32)
    assert np.array_equal(regrid(values, working, reference), linear_regrid(values, working, reference))
    labels = (values[0] > 0.5).astype(np.uint8)
    nearest = sitk.Resample(array_to_image(labels, working), reference.blank(), sitk.Transform(),
                            sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
    assert np.array_equal(regrid(labels, working, reference, "nearest"), image_to_array(nearest))
