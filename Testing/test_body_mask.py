"""The body mask: non-zero voxels with enclosed holes filled, filled inside the body's box only."""

import numpy as np
from scipy import ndimage

from ciml.data.foreground import body_mask


def _shell(shape, centre, outer, inner):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    distance = np.sqrt(((grid - np.reshape(centre, (-1, 1, 1, 1))) ** 2).sum(axis=0))
    return (distance <= outer) & (distance > inner)


def test_the_same_mask_as_filling_the_whole_image():
    rng = np.random.default_rng(0)
    cases = [
        _shell((40, 36, 30), (20, 18, 15), 12, 5),     # a closed shell: one hole
        _shell((40, 36, 30), (20, 18, 2), 12, 5),      # cut open by the image's edge: no hole
        _shell((40, 36, 30), (3, 18, 15), 9, 4) | _shell((40, 36, 30), (30, 10, 20), 6, 2),
        rng.random((30, 30, 30)) > 0.4,                # noise: many small holes, many openings
    ]
    for shape in cases:
        channel = np.where(shape, rng.normal(size=shape.shape) + 3.0, 0.0).astype(np.float32)
        expected = ndimage.binary_fill_holes(channel != 0)
        got = body_mask(channel)
        assert got.dtype == bool and np.array_equal(got, expected)
    assert ndimage.binary_fill_holes(cases[0]).sum() > cases[0].sum()  # the first case has a hole
    assert not body_mask(np.zeros((5, 6, 7), np.float32)).any()
