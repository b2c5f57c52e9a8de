"""Per-modality intensity normalisation, as the model card's ``Modality.normalization`` says.

The four schemes give the network inputs of comparable range whatever the scanner:

- ``zscore_nonzero`` (MR): the non-zero voxels (the head, not the air around it) clipped at
  their :data:`MR_CLIP_PERCENTILE` th percentile, then z-scored; zero outside. The z-score is
  MONAI's ``NormalizeIntensity(nonzero=True)``; the clip first, as nnU-Net and MONAI's BraTS
  pipelines do, keeps a few hot voxels (raw int16 scans reaching 32767 where the brain is
  around 1000) from inflating the standard deviation and squashing the whole brain towards 0.
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

MR_CLIP_PERCENTILE = 99.5
"""``zscore_nonzero`` clips the non-zero voxels at this percentile of their values before the
z-score (only the top: MR has no meaningful negative outliers, and the air is 0)."""


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
        mask = values != 0
        return zscore(clip_high(values, mask, MR_CLIP_PERCENTILE), mask)
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


def clip_high(values: np.ndarray, mask: np.ndarray, percentile: float) -> np.ndarray:
    """``values`` with the voxels in ``mask`` clipped at the ``percentile`` th percentile of theirs.

    Args:
        values: float32 voxel values, any shape.
        mask: bool, same shape: the voxels whose distribution sets the ceiling and that are
            clipped (the others are returned unchanged).
        percentile: in ``[0, 100]``; 100 returns ``values`` as they are.

    Returns:
        A float32 array of the same shape (``values`` itself when nothing is above the ceiling).
    """
    if percentile >= 100 or not mask.any():
        return values
    ceiling = np.float32(np.percentile(values[mask], percentile))
    above = mask & (values > ceiling)
    if not above.any():
        return values
    clipped = values.copy()
    clipped[above] = ceiling
    return clipped


def fill_value(modality: Modality) -> float:
    """The raw intensity of "nothing there" for a modality, used outside a resampled image.

    0 for MR and PET (the background ``zscore_nonzero`` ignores), the low end of the window for
    windowed images (air for CT), so that uncovered voxels look like empty space, not tissue.
    """
    if modality.normalization == "window" and modality.window is not None:
        return float(modality.window[0])
    return 0.0
