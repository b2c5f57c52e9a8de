"""Whole-volume prediction with MONAI sliding-window inference and Gaussian blending.

:func:`predict_windows` is the one place the windows are cut, counted for progress, run and
blended; :func:`predict_logits` and :func:`predict_maps` give it their per-window predictor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Union  # the aliases below are evaluated at runtime, where Python 3.9 has no `|`

import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from ciml.config import InferenceSpec, ModelCard
from ciml.inference.device import amp_dtype
from ciml.inference.gradcam import target_cams

# One batch of windows (B, M, *S) -> a (B, C, *S) tensor or a dict of them, each blended alike.
WindowPredictor = Callable[[torch.Tensor], Union[torch.Tensor, dict[str, torch.Tensor]]]
# One batch of windows (B, M, *S) -> (B, T, *S) logits and (B, T*M, *S) maps, target-major.
WindowMaps = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def autocast(device: torch.device):
    """Mixed precision on the GPU, a no-op elsewhere."""
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def window_count(shape: tuple[int, ...], inference: InferenceSpec) -> int:
    """How many predictor calls (batches of windows) sliding-window inference makes.

    Mirrors MONAI's rule: windows larger than the image are padded to it, and windows step by
    ``roi * (1 - overlap)`` except along a dimension the window covers exactly.

    Args:
        shape: the image's spatial shape S (without the modality axis).
        inference: the card's sliding-window settings (window size, overlap, windows per batch).
    """
    roi, batch = inference.roi_size, inference.sw_batch_size
    padded = tuple(max(s, r) for s, r in zip(shape, roi))
    interval = tuple(r if r == p else max(int(r * (1 - inference.overlap)), 1) for r, p in zip(roi, padded))
    windows = len(dense_patch_slices(padded, roi, interval))
    return -(-windows // batch)


def predict_windows(predictor: WindowPredictor, image: torch.Tensor, card: ModelCard, device: torch.device,
                    on_window: Callable[[int, int], None] | None = None,
                    gradients: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
    """Run ``predictor`` window by window over a whole image and blend its outputs as the card says.

    Args:
        predictor: one batch of windows (B, M, *S_window) on ``device`` -> (B, C, *S_window), or a
            dict of such tensors (each blended on its own).
        image: (M, *S) the normalised modalities in card order, on any device.
        card: gives the window size, overlap, windows per batch and blending.
        device: where the windows run; the blended result is accumulated on the CPU so that
            a whole volume never has to fit in GPU memory.
        on_window: called as ``on_window(done, total)`` after each batch of windows.
        gradients: the predictor needs gradients (Grad-CAM): run under ``no_grad``, inside
            which it enables them itself; otherwise under ``inference_mode``.

    Returns:
        (C, *S) float32 on the CPU, or a dict of them: the predictor's outputs without the
        batch axis.
    """
    inf = card.inference
    total = window_count(tuple(image.shape[1:]), inf)
    done = 0

    def counted(windows: torch.Tensor):
        nonlocal done
        out = predictor(windows)
        done += 1
        if on_window is not None:
            on_window(done, total)
        return out

    with torch.no_grad() if gradients else torch.inference_mode():
        out = sliding_window_inference(
            image[None].to(device), roi_size=inf.roi_size, sw_batch_size=inf.sw_batch_size,
            predictor=counted, overlap=inf.overlap, mode=inf.blend, sw_device=device,
            device=torch.device("cpu"))
    if isinstance(out, dict):
        return {key: value[0].float() for key, value in out.items()}
    return out[0].float()


def _batch_mask(present: torch.Tensor | None, windows: torch.Tensor) -> torch.Tensor | None:
    """(M,) presence -> (B, M) for a batch of windows on their device; ``None`` stays ``None``."""
    if present is None:
        return None
    return present.to(windows.device).reshape(1, -1).expand(windows.shape[0], -1)


def predict_logits(network: torch.nn.Module, image: torch.Tensor, card: ModelCard, device: torch.device,
                   on_window: Callable[[int, int], None] | None = None,
                   present: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of a whole image, window by window, blended as the card says.

    Args:
        network: a network in eval mode on ``device``.
        image: (M, *S) the normalised modalities in card order, on any device.
        card: gives the window size, overlap, windows per batch and blending.
        device: where the windows run (the result is accumulated on the CPU).
        on_window: called as ``on_window(done, total)`` after each batch of windows.
        present: (M,) 1 for the modalities given, 0 for absent ones (their channels are zero);
            ``None``: all given.

    Returns:
        (T, *S) float32 logits on the CPU.
    """

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            if present is None:
                out = network(windows)
            else:
                out = network.forward_features(windows, _batch_mask(present, windows)).logits
        return out.float()

    return predict_windows(predictor, image, card, device, on_window)


def predict_maps(window_maps: WindowMaps, image: torch.Tensor, card: ModelCard, device: torch.device,
                 on_window: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-(target, modality) maps of a whole image, both blended with the same weights.

    Args:
        window_maps: one batch of windows (B, M, *S_window) -> float32 (B, T, *S_window) logits
            and (B, T*M, *S_window) maps, target-major (all modalities of target 0 first); it
            enables gradients itself where it needs them.
        image, card, device, on_window: as for :func:`predict_logits`.

    Returns:
        (T, *S) logits and (T, M, *S) raw (un-normalised, non-negative) maps, on the CPU.
    """

    def predictor(windows: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, maps = window_maps(windows)
        return {"logits": logits, "cams": maps}

    out = predict_windows(predictor, image, card, device, on_window, gradients=True)
    cams = out["cams"].clamp_min(0)
    return out["logits"], cams.reshape(len(card.targets), len(card.modalities), *cams.shape[1:])


def predict_with_cams(network: torch.nn.Module, image: torch.Tensor, card: ModelCard, device: torch.device,
                      on_window: Callable[[int, int], None] | None = None,
                      present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-(target, modality) Grad-CAM maps, blended across windows alike.

    Like :func:`predict_logits` (same arguments; ``network`` a :class:`~ciml.nn.CIMLNet`), with
    each window's maps (:func:`ciml.inference.gradcam.target_cams`) blended with the same
    Gaussian weights as its logits; a modality outside a target's sub-task gets zeros.

    Returns:
        (T, *S) logits and (T, M, *S) raw (un-normalised, non-negative) maps, on the CPU.
    """

    def window_maps(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device):
            logits, cams = target_cams(network, windows, card.inference.threshold, _batch_mask(present, windows))
        zero = torch.zeros_like(logits[:, :1])
        stacked = torch.cat([cams[t].get(m, zero).float() for t in card.target_names for m in card.modality_names],
                            dim=1)
        return logits.float(), stacked

    return predict_maps(window_maps, image, card, device, on_window)
