"""Per-modality Grad-CAM of a CIML network, every modality measured at the same layer.

At each gated level lv the decoder of a sub-task reads one tensor, the sum of its primary's
features and every auxiliary's message::

    skips[lv] = features[primary][lv] + sum over auxiliaries a of message[a][lv]

For a target t of that sub-task the score is the sum of t's logits over the voxels predicted as
t, and its gradient g = d score / d skips[lv] is the gradient at every one of those parts. Each
modality is measured with that one g on its own part (the primary's features, an auxiliary's
message)::

    cam(t, m, lv) = sum over channels c of w_c * part_c,   w_c = spatial mean of g_c

which is Captum's ``LayerGradCam`` of the part, signed (``relu_attributions=False``). The parts
add up to skips[lv], so the modalities' maps add up to the Grad-CAM of the decoder's input at
lv. A modality outside t's sub-task has no map. Each level's map is upsampled to the window and
divided by the window voxels per level voxel (so its sum stays its sum at its own level, the
first-order estimate of docs/gradcam.md), and the levels are summed.

The channel weights w are either one window's own (Captum's definition: :func:`target_layer_cams`,
:func:`target_cams`) or given, e.g. the mean over every window of a volume
(:func:`window_gradients`, then :func:`gated_parts` and :func:`layer_cams` in a second pass),
so that a voxel's map does not depend on the window it was computed in: no window seams.

The encoders and gates run without a graph; the graph starts at the gated skips and no gradient
is kept for any weight, so the cost is one decoder backward per target and window.
:func:`modality_shares` turns the signed maps into each modality's share of a target.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ciml.config import ModelCard

# sub-task -> gated level -> modality -> its part of skips[level], (B, C_level, *S_level).
Parts = dict[str, dict[int, dict[str, torch.Tensor]]]
# (target, gated level) -> channel weights, (B, C_level) for each window or (C_level,) for all.
Weights = dict[tuple[str, int], torch.Tensor]
# target -> (modality, gated level) -> signed map (B, 1, *S_level).
LayerMaps = dict[str, dict[tuple[str, int], torch.Tensor]]


def region_score(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Sum of the logits over the voxels predicted as the region. logits: (B, *S)."""
    cut = torch.logit(torch.tensor(threshold, dtype=logits.dtype, device=logits.device))
    return (logits * (logits.detach() > cut)).sum()


@contextmanager
def frozen(network: torch.nn.Module):
    """No gradient for the weights while maps are computed; restores the flags afterwards."""
    flags = [p.requires_grad for p in network.parameters()]
    network.requires_grad_(False)
    try:
        yield network
    finally:
        for p, flag in zip(network.parameters(), flags):
            p.requires_grad_(flag)


def skip_layer(network, subtask: str, level: int) -> tuple[torch.nn.Module, int]:
    """Where ``subtask``'s decoder reads skips[level], for hooks (Captum's layer attributions).

    Args:
        network: a :class:`~ciml.nn.CIMLNet`.
        subtask: the sub-task's name.
        level: an encoder level (a gated one for Grad-CAM).

    Returns:
        The module and the index of that input among its inputs (Captum's
        ``attribute_to_layer_input=True``): the deepest level is the first up-block's input,
        every other level an up-block's skip.
    """
    deepest = len(network.card.network.features) - 1
    up = network.decoders[subtask].up
    return (up[0], 0) if level == deepest else (up[deepest - 1 - level], 1)


def gated_parts(network, windows: torch.Tensor, present: torch.Tensor | None = None
                ) -> tuple[dict[str, list[torch.Tensor]], Parts]:
    """Encoders and gates, without a graph: each sub-task's skips and their parts at the gated levels.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        present: (B, M) modalities given (an absent auxiliary's message, hence its part, is 0).

    Returns:
        ``skips[subtask]``: the decoder's input, one (B, C_lv, *S / 2**lv) tensor per level, and
        ``parts[subtask][lv][modality]``: the primary's features and each auxiliary's message at
        every gated level lv, which add up to ``skips[subtask][lv]``.
    """
    card: ModelCard = network.card
    skips, parts = {}, {}
    with torch.no_grad():
        features = network.encode(windows)
        for s in card.subtasks:
            skips[s.name], gates = network.gated_skips(s.name, features, present)
            parts[s.name] = {lv: {s.primary: features[s.primary][lv]} for lv in network.gate_levels}
            for (_, a, lv), gate in gates.items():
                parts[s.name][lv][a] = gate.message
    return skips, parts


def window_gradients(network, windows: torch.Tensor, threshold: float, present: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, Parts, Weights]:
    """Logits, parts and each target's Grad-CAM channel weights of a batch of windows.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        threshold: probability that makes a voxel part of a target (the card's).
        present: (B, M) modalities given (absent ones send no message).

    Returns:
        logits (B, T, *S) detached, :func:`gated_parts`' parts, and ``weights[(target, lv)]``
        (B, C_lv): the spatial mean of d score / d skips[lv] per window (0 where the window
        predicts none of the target).
    """
    card: ModelCard = network.card
    skips, parts = gated_parts(network, windows, present)
    by_target, weights = {}, {}
    with frozen(network), torch.enable_grad():
        for s in card.subtasks:
            # Leaves at the gated levels: the backward stops there, before any gate or encoder.
            leaves = [x.detach().requires_grad_(lv in network.gate_levels) for lv, x in enumerate(skips[s.name])]
            logits = network.decode(s.name, leaves)
            for j, t in enumerate(s.targets):
                # Nothing predicted: the score is 0 and so are its gradients.
                score = region_score(logits[:, j], threshold)
                grads = torch.autograd.grad(score, [leaves[lv] for lv in network.gate_levels],
                                            retain_graph=j < len(s.targets) - 1)
                for lv, grad in zip(network.gate_levels, grads):
                    weights[(t, lv)] = grad.float().mean(dim=tuple(range(2, grad.dim())))
                by_target[t] = logits[:, j:j + 1].detach()
    return torch.cat([by_target[t] for t in card.target_names], dim=1), parts, weights


def layer_cams(card: ModelCard, parts: Parts, weights: Weights) -> LayerMaps:
    """Signed Grad-CAM of every part with its target's channel weights, at the part's resolution.

    Args:
        card: the network's card (which targets each sub-task has).
        parts: :func:`gated_parts`' parts, (B, C_lv, *S_lv) each.
        weights: ``(target, lv)`` -> (B, C_lv) for each window, or (C_lv,) shared by all.

    Returns:
        ``cams[target][(modality, lv)]`` (B, 1, *S_lv) float32: sum over c of w_c * part_c, for
        the modalities of the target's sub-task, level by level, primary first.
    """
    cams: LayerMaps = {}
    for s in card.subtasks:
        for t in s.targets:
            cams[t] = {}
            for lv, by_modality in parts[s.name].items():
                for m, part in by_modality.items():
                    # (B, C) or (C,) -> broadcast over the trailing spatial axes of (B, C, *S).
                    w = weights[(t, lv)].to(part.device, torch.float32)
                    w = w.reshape(*w.shape, *([1] * (part.dim() - 2)))
                    cams[t][(m, lv)] = (w * part.float()).sum(dim=1, keepdim=True)
    return cams


def window_cams(maps: LayerMaps, size: tuple[int, ...]) -> dict[str, dict[str, torch.Tensor]]:
    """Layer maps brought to the window: upsampled, divided by the window voxels per level voxel,
    and summed over levels per modality.

    Args:
        maps: :func:`layer_cams`' maps, (B, 1, *S_lv) each.
        size: the window's spatial size S.

    Returns:
        ``cams[target][modality]`` (B, 1, *S): each level's sum over the window equals (up to
        interpolation at the borders) its sum at its own resolution.
    """
    mode = "trilinear" if len(size) == 3 else "bilinear"
    cams: dict[str, dict[str, torch.Tensor]] = {}
    for t, by_layer in maps.items():
        cams[t] = {}
        for (m, _), cam in by_layer.items():
            ratio = math.prod(size) / math.prod(cam.shape[2:])
            up = F.interpolate(cam, size=tuple(size), mode=mode, align_corners=False) / ratio
            cams[t][m] = cams[t][m] + up if m in cams[t] else up
    return cams


def target_layer_cams(network, windows: torch.Tensor, threshold: float, present: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, LayerMaps]:
    """Logits and every (target, modality, level) Grad-CAM of a batch of windows, each window
    with its own channel weights: Captum's ``LayerGradCam`` of each part, signed.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        threshold: probability that makes a voxel part of a target (the card's).
        present: (B, M) modalities given (absent ones send no message).

    Returns:
        logits (B, T, *S) detached, and ``cams[target][(modality, lv)]`` (B, 1, *S_lv) float32
        for the modalities of the target's sub-task at every gated level.
    """
    logits, parts, weights = window_gradients(network, windows, threshold, present)
    return logits, layer_cams(network.card, parts, weights)


def target_cams(network, windows: torch.Tensor, threshold: float, present: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """Logits and every (target, modality) Grad-CAM of a batch of windows, at window size, each
    window with its own channel weights (for one window: the whole image's maps).

    :func:`target_layer_cams`' maps brought to the window by :func:`window_cams`. Arguments as there.

    Returns:
        logits (B, T, *S) detached, and ``cams[target][modality]`` (B, 1, *S) signed, for the
        modalities of the target's sub-task (the others have no map).
    """
    logits, maps = target_layer_cams(network, windows, threshold, present)
    return logits, window_cams(maps, tuple(windows.shape[2:]))


def modality_shares(cams: torch.Tensor, mask: torch.Tensor, card: ModelCard) -> dict[str, dict[str, float]]:
    """Each modality's share of each target's Grad-CAM, from the signed maps.

    share(t, m) = |sum over v in mask of CAM(t, m, v)| / sum over modalities m' of the same: the
    size of m's first-order estimate of the change of t's score when m is withheld
    (docs/gradcam.md), as a part of all of them. The sum is signed before the magnitude is
    taken, so a modality whose map is positive in one place and negative in another counts
    what is left; ReLU'd maps would drop every negative contribution.

    Args:
        cams: (T, M, *S) signed maps (:func:`~ciml.inference.sliding_window.predict_with_cams`).
        mask: (*S) boolean, where to sum: the body (the maps are not shown outside it).
        card: the network's card (target and modality names).

    Returns:
        target -> modality -> share, rounded to 4 decimals; sums to 1 per target (all 0 when
        every map of the target is 0).
    """
    out = {}
    for i, t in enumerate(card.target_names):
        mass = (cams[i] * mask.unsqueeze(0)).flatten(1).sum(dim=1).abs()
        total = float(mass.sum())
        out[t] = {m: round(float(mass[j]) / total, 4) if total > 0 else 0.0 for j, m in enumerate(card.modality_names)}
    return out
