"""The body in an image: where per-modality maps may be non-zero.

After normalisation the background of every modality kind is exactly 0 (MR: ``zscore_nonzero``
keeps the air at 0; CT: the window's low end; PET: no uptake), so the body is the non-zero part
of a normalised channel, with enclosed holes (air in the sinuses, lungs, necrosis at 0) filled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ciml.data.geometry import nonzero_box


def body_mask(channel: np.ndarray) -> np.ndarray:
    """Boolean mask of the body in one normalised channel ``(X, Y, Z)``; all False if blank.

    Holes are filled inside the body's bounding box only: a background voxel on the box's
    faces touches the background around it, so the box holds every hole, and filling it alone
    gives the same mask as filling the whole image (a head is about a third of a BraTS volume).
    """
    mask = channel != 0
    box = nonzero_box(mask)
    if box is None:
        return mask
    mask[box] = ndimage.binary_fill_holes(mask[box])
    return mask

