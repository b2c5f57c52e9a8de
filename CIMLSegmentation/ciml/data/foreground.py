"""The body in an image: where per-modality maps may be non-zero.

After normalisation the background of every modality kind is exactly 0 (MR: ``zscore_nonzero``
keeps the air at 0; CT: the window's low end; PET: no uptake), so the body is the non-zero part
of a normalised channel, with enclosed holes (air in the sinuses, lungs, necrosis at 0) filled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask(channel: np.ndarray) -> np.ndarray:
    """Boolean mask of the body in one normalised channel ``(X, Y, Z)``; all False if blank."""
    mask = channel != 0
    if not mask.any():
        return mask
    return ndimage.binary_fill_holes(mask)

