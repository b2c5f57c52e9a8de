"""Whole-volume prediction with MONAI sliding-window inference and Gaussian blending."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from ciml.config import ModelCard
from ciml.inference.device import amp_dtype
from ciml.inference.gradcam import target_cams


def autocast(device: torch.device):
    """Mixed precision on the GPU, a no-op elsewhere."""
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def predict_logits(network: torch.nn.Module, image: torch.Tensor, card: ModelCard, device: torch.device,
                   on_window: Callable[[int, int], None] | None = None,
                   present: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of a whole image, window by window, blended as the card says.

    Args:
        network: a network in eval mode on ``device``.
        image: (M, *S) the normalised modalities in card order, on any device.
        card: gives the window size, overlap, windows per batch and blending.
        device: where the windows run; the blended result is accumulated on the CPU so that
            a whole volume never has to fit in GPU memory.
        on_window: called as ``on_window(done, total)`` after each batch of windows.
        present: (M,) 1 for the modalities given, 0 for absent ones (their channels are zero);
            ``None``: all given.

    Returns:
        (T, *S) float32 logits on the CPU.
    """

    inf = card.inference
    total = _window_count(tuple(image.shape[1:]), inf.roi_size, inf.overlap, inf.sw_batch_size)
    done = [0]

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            if present is None:
                out = network(windows)
            else:
                mask = present.to(windows.device).reshape(1, -1).expand(windows.shape[0], -1)
                out = network.forward_features(windows, mask).logits
        out = out.float()
        done[0] += 1
        if on_window is not None:
            on_window(done[0], total)
        return out

    with torch.inference_mode():
        logits = sliding_window_inference(
            image[None].to(device), roi_size=inf.roi_size, sw_batch_size=inf.sw_batch_size,
            predictor=predictor, overlap=inf.overlap, mode=inf.blend, sw_device=device,
            device=torch.device("cpu"))
    return logits[0].float()


def predict_with_cams(network: torch.nn.Module, image: torch.Tensor, card: ModelCard, device: torch.device,
                      on_window: Callable[[int, int], None] | None = None,
                      present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-(target, modality) Grad-CAM maps, blended across windows alike.

    Like :func:`predict_logits`, with each window's maps (:func:`ciml.inference.gradcam.target_cams`)
    blended with the same Gaussian weights as its logits.

    Returns:
        (T, *S) logits and (T, M, *S) raw (un-normalised, non-negative) maps, on the CPU.
    """


    inf = card.inference
    total = _window_count(tuple(image.shape[1:]), inf.roi_size, inf.overlap, inf.sw_batch_size)
    done = [0]
    names = card.modality_names

    def predictor(windows: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = None if present is None else present.to(windows.device).reshape(1, -1).expand(windows.shape[0], -1)
        with autocast(device):
            logits, cams = target_cams(network, windows, inf.threshold, mask)
        zero = torch.zeros_like(logits[:, :1])
        stacked = torch.cat([cams[t].get(m, zero).float() for t in card.target_names for m in names], dim=1)
        done[0] += 1
        if on_window is not None:
            on_window(done[0], total)
        return {"logits": logits.float(), "cams": stacked}

    with torch.no_grad():
        out = sliding_window_inference(
            image[None].to(device), roi_size=inf.roi_size, sw_batch_size=inf.sw_batch_size,
            predictor=predictor, overlap=inf.overlap, mode=inf.blend, sw_device=device,
            device=torch.device("cpu"))
    cams = out["cams"][0].float().clamp_min(0)
    return out["logits"][0].float(), cams.reshape(len(card.targets), len(names), *cams.shape[1:])


def _window_count(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float, batch: int) -> int:
    """How many predictor calls sliding_window_inference will make (for progress).

    Mirrors MONAI's rule: windows larger than the image are padded to it, and windows step by
    ``roi * (1 - overlap)`` except along a dimension the window covers exactly.
    """

    padded = tuple(max(s, r) for s, r in zip(shape, roi))
    interval = tuple(r if r == p else max(int(r * (1 - overlap)), 1) for r, p in zip(roi, padded))
    windows = len(dense_patch_slices(padded, roi, interval))
    return -(-windows // batch)
