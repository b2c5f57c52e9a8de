"""Where the windows go: the body's box, and the fewest windows that cover it.

Two choices make a case cheap to segment, both measured in docs/BENCHMARKS.md ("Speed"):

- only the body is segmented. As nnU-Net does, the case is cut to the bounding box of its
  non-zero voxels (every modality's background is exactly 0 after normalisation,
  :mod:`ciml.data.foreground`) plus ``inference.crop_margin`` voxels, and the result is pasted
  back; outside the box every output is a fixed background value. On a BraTS-sized case the
  head is about 30 % of the volume.
- the box is covered by windows of at most ``inference.window_voxels`` (by default the
  training patch's voxels): one window where the whole box fits (as MONAI's BraTS bundle runs
  one 240 x 240 x 160 window), otherwise the box's longest axis is split until each window
  fits, the windows overlapping by ``inference.overlap``. Overlapping 128^3 tiles of a whole
  240 x 240 x 155 case process about four times its voxels. Windows no larger than the training
  patch keep instance normalisation's statistics close to training's: one window over a box
  larger than the patch cost the built-in model Dice (docs/BENCHMARKS.md).

Neither is exact: the networks normalise each window by its own statistics (instance
normalisation), so a window's output depends on how much background it holds. The measured
difference is in docs/BENCHMARKS.md; ``crop=False`` and ``window_voxels=0`` give the old path
(tiles of ``roi_size`` over the whole image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.data.utils import dense_patch_slices

from ciml.config import ModelCard


@dataclass(frozen=True)
class WindowPlan:
    """How one image is cut into windows.

    Attributes:
        box: per spatial axis, the slice of the image that is segmented (the whole axis when
            not cropped).
        roi_size: the window size.
        overlap: the windows' overlap fraction (MONAI's ``overlap``).
    """

    box: tuple[slice, ...]
    roi_size: tuple[int, ...]
    overlap: float

    @property
    def shape(self) -> tuple[int, ...]:
        """The segmented box's spatial shape."""
        return tuple(s.stop - s.start for s in self.box)


def body_box(image: torch.Tensor, margin: int) -> tuple[slice, ...] | None:
    """The bounding box of the voxels where any modality is non-zero, grown by ``margin`` voxels
    and clipped to the image; ``None`` when every modality is blank.

    Args:
        image: (M, *S) normalised modalities (an absent modality is all zero and adds nothing).
        margin: voxels kept around the body on every side.
    """
    nonzero = (image != 0).any(dim=0)
    if not bool(nonzero.any()):
        return None
    box = []
    for axis, size in enumerate(nonzero.shape):
        others = tuple(a for a in range(nonzero.dim()) if a != axis)
        hits = torch.nonzero(nonzero.any(dim=others) if others else nonzero).flatten()
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)))
    return tuple(box)


def aligned_box(box: tuple[slice, ...], multiple: int, shape: Sequence[int]) -> tuple[slice, ...]:
    """``box`` grown so that it starts on a multiple of ``multiple`` and spans a multiple of it,
    where the image (``shape``) allows: the network's strided levels then sample the same voxels
    as on the whole image, and a window of the box's size needs no padding."""
    out = []
    for b, size in zip(box, shape):
        start = b.start - b.start % multiple
        stop = min(start + _round_up(b.stop - start, multiple), size)
        out.append(slice(start, stop))
    return tuple(out)


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


def window_size(shape: Sequence[int], multiple: int, max_voxels: int, overlap: float) -> tuple[int, ...]:
    """A window of at most ``max_voxels`` voxels that covers ``shape`` in few windows.

    Starts from the whole shape (rounded up to ``multiple``, every level's divisor) and splits the
    longest window axis into one more window at a time, ``n`` windows overlapping by ``overlap``
    covering ``shape[i]`` when each is ``shape[i] / (1 + (n - 1) * (1 - overlap))`` long. Splitting
    the longest axis keeps windows compact, like the cubic training patches. Choosing the fewest
    windows instead was measured worse: on the built-in model it picked 80 x 48 x 64 slabs for an
    80 x 96 x 64 box, and WT Dice fell from 0.99 to 0.43 on that case (docs/BENCHMARKS.md,
    "Window plans").

    Args:
        shape: the spatial shape to cover.
        multiple: every window size is a multiple of this (``2 ** (levels - 1)``).
        max_voxels: the largest window, in voxels (at least ``multiple ** dims``).
        overlap: the windows' overlap fraction, in [0, 1).
    """
    counts = [1] * len(shape)
    roi = [_round_up(s, multiple) for s in shape]
    while math.prod(roi) > max_voxels:
        axis = max(range(len(roi)), key=lambda a: roi[a])
        if roi[axis] == multiple:
            break
        counts[axis] += 1
        roi[axis] = min(roi[axis] - multiple,
                        _round_up(shape[axis] / (1 + (counts[axis] - 1) * (1 - overlap)), multiple))
    return tuple(roi)


def plan_windows(image: torch.Tensor, card: ModelCard) -> WindowPlan:
    """The card's windows for ``image`` (M, *S): its body box and the window size covering it."""
    inference = card.inference
    multiple = card.network.window_multiple
    full = tuple(slice(0, s) for s in image.shape[1:])
    box = full
    if inference.crop:
        body = body_box(image, inference.crop_margin)
        box = full if body is None else aligned_box(body, multiple, image.shape[1:])
    shape = tuple(s.stop - s.start for s in box)
    limit = inference.window_voxels
    if limit is None:
        limit = math.prod(card.training.patch_size)
    if limit == 0:
        return WindowPlan(box, tuple(inference.roi_size), inference.overlap)
    return WindowPlan(box, window_size(shape, multiple, limit, inference.overlap), inference.overlap)


def window_count(shape: Sequence[int], roi_size: Sequence[int], overlap: float, batch: int = 1) -> int:
    """How many predictor calls (batches of windows) MONAI's sliding window makes over ``shape``.

    Mirrors MONAI's rule: windows larger than the image are padded to it, and windows step by
    ``roi * (1 - overlap)`` except along a dimension the window covers exactly.
    """
    padded = tuple(max(s, r) for s, r in zip(shape, roi_size))
    interval = tuple(r if r == p else max(int(r * (1 - overlap)), 1) for r, p in zip(roi_size, padded))
    windows = len(dense_patch_slices(padded, tuple(roi_size), interval))
    return -(-windows // batch)

