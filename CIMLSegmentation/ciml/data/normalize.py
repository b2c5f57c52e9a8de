"""Per-modality intensity normalisation, as the model card's ``Modality.normalization`` says.

The four schemes give the network inputs of comparable range whatever the scanner:

- ``zscore_nonzero`` (MR): z-score over the non-zero voxels (the head, not the air around it),
  zero outside, as MONAI's ``NormalizeIntensity(nonzero=True)`` and nnU-Net do for MR.
- ``zscore``: z-score over the whole image.
- ``window`` (CT, Hounsfield units) and ``suv_clip`` (PET, SUV): clip to ``Modality.window`` and
  scale it to 0..1, as MONAI's ``ScaleIntensityRange(clip=True)``.

They are written with numpy rather than MONAI's transforms so that the case loader stays
torch-free (the same code checks inputs before any network is loaded); the tests check they
agree with MONAI's.
"""

from __future__ import annotations

import numpy as np

from ciml.config.card import Modality


def normalize(array: np.ndarray, modality: Modality) -> np.ndarray:
    """Normalise one modality's voxels as the card says.

    Args:
        array: voxel values of one image, any shape.
        modality: the card's modality (its ``normalization`` and ``window``).

    Returns:
        A float32 array of the same shape.
    """
    values = np.asarray(array, dtype=np.float32)
    scheme = modality.normalization
    if scheme == "zscore_nonzero":
        return zscore(values, values != 0)
    if scheme == "zscore":
        return zscore(values, None)
    if scheme in ("window", "suv_clip"):
        low, high = modality.window
        return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)
    raise ValueError(f"modality {modality.name}: unknown normalization {scheme!r}")


def zscore(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation of the voxels in ``mask``.

    Voxels outside ``mask`` become 0. A constant region (standard deviation 0) is only
    centred, never divided by zero.
    """
    out = np.zeros_like(values, dtype=np.float32)
    selected = values if mask is None else values[mask]
    if selected.size == 0:
        return out
    mean, std = float(selected.mean(dtype=np.float64)), float(selected.std(dtype=np.float64))
    scaled = (selected - mean) / (std if std > 0 else 1.0)
    if mask is None:
        return scaled.astype(np.float32)
    out[mask] = scaled
    return out


def fill_value(modality: Modality) -> float:
    """The raw intensity of "nothing there" for a modality, used outside a resampled image.

    0 for MR and PET (the background ``zscore_nonzero`` ignores), the low end of the window for
    windowed images (air for CT), so that uncovered voxels look like empty space, not tissue.
    """
    if modality.normalization == "window" and modality.window is not None:
        return float(modality.window[0])
    return 0.0
