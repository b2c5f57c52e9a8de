"""Linear resampling one axis at a time gives SimpleITK's values, and steps aside where it cannot."""

import numpy as np
import pytest
import SimpleITK as sitk

from ciml.data.case import Case, regrid, sitk_regrid
from ciml.data.geometry import Geometry
from ciml.data.io import array_to_image, image_to_array
from ciml.data.labels import regions_to_label
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


def _blob(size: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    """A smooth bump, 1 at ``centre`` falling to about 0 a few radii away (float32)."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in size], indexing="ij"))
    distance = np.sqrt(((grid - np.reshape(centre, (-1, 1, 1, 1))) ** 2).sum(axis=0))
    return np.exp(-(distance / radius) ** 2).astype(np.float32)


def test_within_a_box_the_same_values_and_only_voxels_it_reaches_computed():
    reference = Geometry((10.0, -40.0, 3.0), (1.0, 1.2, 1.5), LPS_FLIPPED, (60, 50, 40))
    working = _working_grid(reference, (2.13, -1.37, 3.71), (20, 23, 14))
    box = (slice(5, 11), slice(8, 15), slice(3, 9))
    values = np.zeros((2, *working.size), np.float32)
    values[(slice(None), *box)] = np.random.default_rng(3).random((2, 6, 7, 6), dtype=np.float32) + 0.1
    assert np.array_equal(linear_regrid(values, working, reference, within=box),
                          linear_regrid(values, working, reference))
    # values outside the box are not read into voxels the box does not reach: they stay 0
    ones = np.ones((1, *working.size), np.float32)
    reached = linear_regrid(ones, working, reference, within=box)[0] > 0
    everywhere = linear_regrid(ones, working, reference)[0] > 0
    assert reached.sum() < 0.2 * everywhere.sum()
    assert np.array_equal(reached, linear_regrid(values[:1], working, reference)[0] > 0)


def test_label_map_resamples_only_near_the_threshold_with_the_same_labels(tiny_preset):
    card = tiny_preset("brats")
    reference = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), LPS_FLIPPED, (70, 64, 50))
    working = _working_grid(reference, (0.4, 0.7, 0.2), (28, 26, 20))
    regions = np.stack([_blob(working.size, (12, 13, 9), r) for r in (6.0, 3.5, 2.0)])
    case = Case("x", np.zeros((len(card.modalities), *working.size), np.float32), working, reference)
    for threshold in (0.5, 0.2, 0.9):
        expected = regions_to_label(regrid(regions, working, reference), card, threshold)
        got = case.label_map(regions, card, threshold)
        assert expected.any() and np.array_equal(got, expected)
    assert not case.label_map(regions * 0.1, card).any()  # nothing above the threshold anywhere
