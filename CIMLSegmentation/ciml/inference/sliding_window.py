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
from ciml.inference.gradcam import Weights, gated_parts, layer_cams, window_cams, window_gradients

# One batch of windows (B, M, *S) -> a (B, C, *S) tensor or a dict of them, each blended alike.
WindowPredictor = Callable[[torch.Tensor], Union[torch.Tensor, dict[str, torch.Tensor]]]
# Grad-CAM pass 1: one batch of windows (B, M, *S) -> (B, T, *S) logits and (target, gated level)
# -> (B, C_level) channel weights.
WindowWeights = Callable[[torch.Tensor], tuple[torch.Tensor, Weights]]
# Grad-CAM pass 2: one batch of windows (B, M, *S) and the volume's (target, gated level) -> (C_level,)
# channel weights -> (B, T*M, *S) maps, target-major.
WindowMaps = Callable[[torch.Tensor, Weights], torch.Tensor]


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


def batch_mask(present: torch.Tensor | None, windows: torch.Tensor) -> torch.Tensor | None:
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
                out = network.forward_features(windows, batch_mask(present, windows)).logits
        return out.float()

    return predict_windows(predictor, image, card, device, on_window)


def predict_maps(window_weights: WindowWeights, window_maps: WindowMaps, image: torch.Tensor, card: ModelCard,
                 device: torch.device, on_window: Callable[[int, int], None] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-(target, modality) Grad-CAM maps of a whole image, in two passes over its windows.

    Pass 1 blends the logits and averages every window's channel weights over all windows; pass 2
    computes each window's maps with those volume-wide weights and blends them with the same
    Gaussian weights as the logits. Per-window weights would change from window to window and
    print the window borders into the blended maps; with one set of weights a voxel's map does
    not depend on the window that computed it (docs/gradcam.md). For a one-window image the
    weights are that window's own: every level's map is Captum's ``LayerGradCam`` of its layer.

    Args:
        window_weights: pass 1, one batch of windows (B, M, *S_window) -> float32 (B, T, *S_window)
            logits and ``(target, gated level)`` -> (B, C_level) channel weights; it enables
            gradients itself where it needs them.
        window_maps: pass 2, one batch of windows and the volume's weights (``(target, level)``
            -> (C_level,)) -> float32 (B, T*M, *S_window) maps, target-major (all modalities of
            target 0 first).
        image, card, device: as for :func:`predict_logits`.
        on_window: called as ``on_window(done, total)`` after each batch of windows of either
            pass (``total`` counts both passes).

    Returns:
        (T, *S) logits and (T, M, *S) signed, un-normalised maps, on the CPU.
    """
    sums: dict[tuple[str, int], torch.Tensor] = {}
    count = 0

    def first(windows: torch.Tensor) -> torch.Tensor:
        nonlocal count
        logits, weights = window_weights(windows)
        for key, w in weights.items():
            total = w.sum(dim=0).float().cpu()
            sums[key] = sums[key] + total if key in sums else total
        count += windows.shape[0]
        return logits

    def counted(offset: int) -> Callable[[int, int], None] | None:
        return None if on_window is None else lambda done, total: on_window(offset * total + done, 2 * total)

    logits = predict_windows(first, image, card, device, counted(0), gradients=True)
    weights = {key: total / count for key, total in sums.items()}
    maps = predict_windows(lambda windows: window_maps(windows, weights), image, card, device, counted(1))
    return logits, maps.reshape(len(card.targets), len(card.modalities), *maps.shape[1:])


def predict_with_cams(network: torch.nn.Module, image: torch.Tensor, card: ModelCard, device: torch.device,
                      on_window: Callable[[int, int], None] | None = None,
                      present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-(target, modality) Grad-CAM maps, every modality at the same layer.

    Like :func:`predict_logits` (same arguments; ``network`` a :class:`~ciml.nn.CIMLNet`; the
    progress counts two passes), through :func:`predict_maps`: pass 1 is
    :func:`ciml.inference.gradcam.window_gradients` (one decoder backward per target and window),
    pass 2 runs the encoders and gates again without a graph and applies the volume's channel
    weights to each modality's part of the gated skips. A modality outside a target's sub-task
    gets zeros.

    Returns:
        (T, *S) logits and (T, M, *S) signed, un-normalised maps, on the CPU (clamp at 0 to
        display them; the shares are computed from the signed maps).
    """
    threshold = card.inference.threshold

    def window_weights(windows: torch.Tensor) -> tuple[torch.Tensor, Weights]:
        with autocast(device):
            logits, _, weights = window_gradients(network, windows, threshold, batch_mask(present, windows))
        return logits.float(), weights

    def window_maps(windows: torch.Tensor, weights: Weights) -> torch.Tensor:
        with autocast(device):
            _, parts = gated_parts(network, windows, batch_mask(present, windows))
        cams = window_cams(layer_cams(card, parts, weights), tuple(windows.shape[2:]))
        zero = torch.zeros(windows.shape[0], 1, *windows.shape[2:], device=windows.device)
        return torch.cat([cams[t].get(m, zero) for t in card.target_names for m in card.modality_names], dim=1)

    return predict_maps(window_weights, window_maps, image, card, device, on_window)
