"""Simulated missing modalities for PASSION training (imbalanced missing rates).

A training case keeps or loses each modality independently, modality ``m`` being dropped with
probability ``p_m = card.training.missing_rates[m]`` (0 when not listed). A draw that would drop
every modality is re-drawn: a case without any input teaches nothing. So the drawn presence
follows the independent model *conditioned on at least one modality being present*, and the
marginal presence frequency of ``m`` is ``(1 - p_m) / (1 - prod_k p_k)``
(:func:`presence_frequencies`), whose inverse is PASSION's frequency weight
(:func:`ciml.losses.passion.inverse_frequency_weights`).

A dropped modality is zeroed (:func:`apply_presence`), the convention ``ciml.data`` uses for a
modality a case never had, and ``present`` is passed to the network so that the modality sends
no gate message. PASSION's single-modality students are built the same way
(:func:`ciml.losses.passion_students.single_modality_students`).

Only numpy is needed here; :func:`apply_presence` also takes torch tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

# After this many all-dropped draws the sampler keeps the modality with the lowest missing rate:
# only reachable when every available modality is dropped almost surely.
_MAX_REDRAWS = 1000


def _rates(modality_names: Sequence[str], missing_rates: Mapping[str, float]) -> np.ndarray:
    unknown = set(missing_rates) - set(modality_names)
    if unknown:
        raise ValueError(f"missing_rates names unknown modalities: {', '.join(sorted(unknown))}")
    rates = np.array([float(missing_rates.get(m, 0.0)) for m in modality_names], dtype=np.float64)
    if ((rates < 0) | (rates > 1)).any():
        raise ValueError(f"missing rates must lie in [0, 1], got {dict(zip(modality_names, rates))}")
    return rates


def sample_present(rng: np.random.Generator, modality_names: Sequence[str],
                   missing_rates: Mapping[str, float], available: Any = None) -> np.ndarray:
    """Draw which modalities one training case keeps.

    Args:
        rng: the generator; the same generator state gives the same draw.
        modality_names: the card's modalities, in channel order (M of them).
        missing_rates: modality -> probability of dropping it; unlisted modalities are never
            dropped.
        available: optional (M,) bool, the modalities the case really has; the others stay
            absent, and at least one available modality is kept.

    Returns:
        (M,) bool, True where the modality is kept. Never all False (unless nothing is
        available). All-dropped draws are re-drawn (see the module docstring); after
        1000 of them the available modality with the lowest missing rate is kept.
    """
    rates = _rates(modality_names, missing_rates)
    avail = np.ones(len(rates), dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if avail.shape != rates.shape:
        raise ValueError(f"available has shape {avail.shape}, expected ({len(rates)},)")
    if not avail.any():
        return avail.copy()
    for _ in range(_MAX_REDRAWS):
        present = (rng.random(len(rates)) >= rates) & avail
        if present.any():
            return present
    present = np.zeros_like(avail)
    present[int(np.argmin(np.where(avail, rates, np.inf)))] = True
    return present


def apply_presence(image: Any, present: Any) -> Any:
    """A copy of ``image`` with the absent modalities' channels set to zero.

    Args:
        image: (M, *S) numpy array or torch tensor for one case, or (B, M, *S) for a batch.
        present: (M,) or (B, M) bool (numpy or torch), matching the leading dims of ``image``.

    Returns:
        Same type, shape, dtype and device as ``image``; ``image`` is left unchanged.
    """
    if not hasattr(present, "shape"):
        present = np.asarray(present, dtype=bool)
    lead = tuple(image.shape[:len(present.shape)])
    if tuple(present.shape) != lead:
        raise ValueError(f"present has shape {tuple(present.shape)}, image starts with {lead}")
    if isinstance(image, np.ndarray):
        keep = np.asarray(present, dtype=bool).reshape(*lead, *([1] * (image.ndim - len(lead))))
        return np.where(keep, image, np.zeros((), dtype=image.dtype))

    keep = torch.as_tensor(present, device=image.device).to(torch.bool)
    keep = keep.reshape(*lead, *([1] * (image.dim() - len(lead))))
    return torch.where(keep, image, torch.zeros((), dtype=image.dtype, device=image.device))


def presence_frequencies(modality_names: Sequence[str], missing_rates: Mapping[str, float]) -> np.ndarray:
    """(M,) expected fraction of training cases that keep each modality under :func:`sample_present`.

    ``(1 - p_m) / (1 - prod_k p_k)``: the independent model conditioned on at least one
    modality being present; ``1 - p_m`` whenever some modality is never dropped.
    """
    rates = _rates(modality_names, missing_rates)
    all_dropped = float(np.prod(rates))
    if all_dropped >= 1.0:
        raise ValueError("every modality is always missing: no case would have any input")
    return (1.0 - rates) / (1.0 - all_dropped)
