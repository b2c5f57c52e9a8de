"""Whole-volume prediction with MONAI sliding-window inference and Gaussian blending.

:func:`predict_windows` is the one place the windows are cut, counted for progress, run and
blended; :func:`predict_logits` and :func:`predict_maps` give it their per-window predictor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Union  # the aliases below are evaluated at runtime, where Python 3.9 has no `|`

import torch
from monai.inferers import sliding_window_inference

from ciml.config import ModelCard
from ciml.inference.device import amp_dtype
from ciml.inference.gradcam import Weights, gated_parts, layer_cams, window_cams, window_gradients
from ciml.inference.windows import WindowPlan, plan_windows, window_count

# One batch of windows (B, M, *S) -> a (B, C, *S) tensor or a dict of them, each blended alike.
WindowPredictor = Callable[[torch.Tensor], Union[torch.Tensor, dict[str, torch.Tensor]]]
# Grad-CAM pass 1: one batch of windows (B, M, *S) -> (B, T, *S) logits and (target, gated level)
# -> (B, C_level) channel weights.
WindowWeights = Callable[[torch.Tensor], tuple[torch.Tensor, Weights]]
# Grad-CAM pass 2: one batch of windows (B, M, *S) and the volume's (target, gated level) -> (C_level,)
# channel weights -> (B, T*M, *S) maps, target-major.
WindowMaps = Callable[[torch.Tensor, Weights], torch.Tensor]

# Every logit outside the body's box: far below any threshold (sigmoid about 2e-9), and finite,
# so that differences between outputs (a modality's effect) stay 0 there.
BACKGROUND_LOGIT = -20.0


def autocast(device: torch.device):
    """Mixed precision on the GPU, a no-op elsewhere."""
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def predict_windows(predictor: WindowPredictor, image: torch.Tensor, card: ModelCard, device: torch.device,
                    on_window: Callable[[int, int], None] | None = None, gradients: bool = False,
                    outside: float = BACKGROUND_LOGIT, plan: WindowPlan | None = None
                    ) -> torch.Tensor | dict[str, torch.Tensor]:
    """Run ``predictor`` window by window over the body in an image and blend its outputs as the card says.

    The windows cover the body's box only, as few as the card's ``inference.window_voxels``
    allows (:func:`~ciml.inference.windows.plan_windows`); outside the box every output is
    ``outside``.

    Args:
        predictor: one batch of windows (B, M, *S_window) on ``device`` -> (B, C, *S_window), or a
            dict of such tensors (each blended on its own).
        image: (M, *S) the normalised modalities in card order, on any device.
        card: gives the crop, window size, overlap, windows per batch and blending.
        device: where the windows run; the blended result is accumulated on the CPU so that
            a whole volume never has to fit in GPU memory.
        on_window: called as ``on_window(done, total)`` after each batch of windows.
        gradients: the predictor needs gradients (Grad-CAM): run under ``no_grad``, inside
            which it enables them itself; otherwise under ``inference_mode``.
        outside: every output's value outside the body's box (a logit far below any threshold
            by default; 0 for maps).
        plan: the windows; ``None``: the card's for this image and ``gradients``.

    Returns:
        (C, *S) float32 on the CPU, or a dict of them: the predictor's outputs without the
        batch axis.
    """
    inf = card.inference
    plan = plan or plan_windows(image, card)
    total = window_count(plan.shape, plan.roi_size, plan.overlap, inf.sw_batch_size)
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
            image[(slice(None), *plan.box)][None].to(device), roi_size=plan.roi_size,
            sw_batch_size=inf.sw_batch_size, predictor=counted, overlap=plan.overlap, mode=inf.blend,
            sw_device=device, device=torch.device("cpu"))

    def pasted(values: torch.Tensor) -> torch.Tensor:
        if values.shape[2:] == image.shape[1:]:
            return values[0].float()
        whole = torch.full((values.shape[1], *image.shape[1:]), outside, dtype=torch.float32)
        whole[(slice(None), *plan.box)] = values[0].float()
        return whole

    if isinstance(out, dict):
        return {key: pasted(value) for key, value in out.items()}
    return pasted(out)


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

    plan = plan_windows(image, card)  # both passes: the same windows and blending
    logits = predict_windows(first, image, card, device, counted(0), gradients=True, plan=plan)
    weights = {key: total / count for key, total in sums.items()}
    maps = predict_windows(lambda windows: window_maps(windows, weights), image, card, device, counted(1),
                           outside=0.0, plan=plan)
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
