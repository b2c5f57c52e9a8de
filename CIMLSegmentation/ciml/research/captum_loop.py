"""The benchmark's baseline for the Grad-CAM maps: the same maps from Captum, one call per
(target, gated level) for the gradients and one for the activations, blended by the same sliding
window (configuration ``captum_loop`` of :mod:`ciml.research.benchmark`).

Captum is optional (the `test` extra): only this baseline needs it, so it is imported where used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ciml.config import ModelCard
from ciml.inference.gradcam import Parts, layer_cams, skip_layer, window_cams
from ciml.inference.sliding_window import autocast, predict_maps


def captum_window_weights(network, windows: torch.Tensor, card: ModelCard
                          ) -> tuple[torch.Tensor, dict[tuple[str, int], torch.Tensor]]:
    """Logits (B, T, *S) and Grad-CAM channel weights of a batch of windows (B, M, *S) from Captum.

    One Captum ``LayerGradientXActivation`` call (gradients only) per (target, gated level), at
    the decoder's input skips[level] (:func:`~ciml.inference.gradcam.skip_layer`), the layer at which
    :func:`~ciml.inference.gradcam.window_gradients` measures every modality.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        card: the network's card (targets, threshold).

    Returns:
        logits (B, T, *S) float32 and ``(target, level)`` -> (B, C_level) spatial means of the gradient.
    """
    from captum.attr import LayerGradientXActivation  # optional package (the `test` extra): only this baseline needs it

    cut = float(torch.logit(torch.tensor(card.inference.threshold)))
    with torch.no_grad():
        logits = network(windows).float()
    predicted = logits > cut  # the voxels each score counts, fixed for Captum's forwards
    weights = {}
    for s in card.subtasks:
        for t in s.targets:
            i = card.target_index(t)

            def score(x: torch.Tensor, i: int = i) -> torch.Tensor:
                return (network(x)[:, i].float() * predicted[:, i]).flatten(1).sum(dim=1)

            for lv in network.gate_levels:
                layer, index = skip_layer(network, s.name, lv)
                with torch.enable_grad():  # predict_windows runs this pass under no_grad
                    grads = LayerGradientXActivation(score, layer, multiply_by_inputs=False).attribute(
                        windows, attribute_to_layer_input=True)
                grad = grads[index].detach().float()
                weights[(t, lv)] = grad.mean(dim=tuple(range(2, grad.dim())))
    return logits, weights


def captum_window_maps(network, windows: torch.Tensor, card: ModelCard,
                       weights: dict[tuple[str, int], torch.Tensor]) -> torch.Tensor:
    """Maps (B, T*M, *S) of a batch of windows (B, M, *S), target-major, from Captum's activations.

    One Captum ``LayerActivation`` call reads every modality's part of the gated skips (the
    primary's encoder output and each auxiliary's gate message at every gated level); the
    volume's channel ``weights`` ((target, level) -> (C_level,)) turn them into maps as in
    :func:`~ciml.inference.gradcam.layer_cams` and :func:`~ciml.inference.gradcam.window_cams`.
    Modalities outside a target's sub-task get zeros.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        card: the network's card (targets, modalities).
        weights: from pass 1 (:func:`captum_window_weights`), averaged over the volume's windows.
    """
    from captum.attr import LayerActivation  # optional package (the `test` extra): only this baseline needs it

    # The primaries' encoder levels, then every gate's message in gate_keys' order; each part
    # is filed by (sub-task, level, modality), so the order only has to match the activations'.
    layers = {(s.name, lv, s.primary): network.encoders[s.primary].levels[lv]
              for s in card.subtasks for lv in network.gate_levels}
    layers.update({(s, lv, a): network.gate(s, a, lv).message for s, a, lv in network.gate_keys()})
    activations = LayerActivation(network, list(layers.values())).attribute(windows)
    parts: Parts = {}
    for (subtask, lv, m), act in zip(layers, activations):
        parts.setdefault(subtask, {}).setdefault(lv, {})[m] = act
    cams = window_cams(layer_cams(card, parts, weights), tuple(windows.shape[2:]))
    zero = torch.zeros(windows.shape[0], 1, *windows.shape[2:], device=windows.device)
    return torch.cat([cams[t].get(m, zero) for t in card.target_names for m in card.modality_names], dim=1)


def predict_with_captum(network, image: torch.Tensor, card: ModelCard, device: torch.device,
                        on_window: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`~ciml.inference.sliding_window.predict_with_cams` (its arguments but ``present``,
    its results), the gradients and activations from Captum (:func:`captum_window_weights`,
    :func:`captum_window_maps`)."""

    def window_weights(windows: torch.Tensor) -> tuple[torch.Tensor, dict[tuple[str, int], torch.Tensor]]:
        with autocast(device):
            return captum_window_weights(network, windows, card)

    def window_maps(windows: torch.Tensor, weights: dict[tuple[str, int], torch.Tensor]) -> torch.Tensor:
        with autocast(device):
            return captum_window_maps(network, windows, card, weights)

    return predict_maps(window_weights, window_maps, image, card, device, on_window)
