"""Per-modality Grad-CAM of a CIML network, window by window.

For a target r, the score is the sum of r's logits over the voxels predicted as r. Its gradient
gives, for every modality at once, a class activation map at that modality's layer:

- an auxiliary of r's sub-task: the messages its gates send (one map per gated level, summed
  after upsampling), so the map shows what that modality *added* to the primary;
- the primary of r's sub-task: its deepest encoder features;
- any other modality: zero (it does not reach r's decoder).

Each map is ReLU(sum_c mean(grad_c) * activation_c), upsampled to the window. The encoders run
without a graph; the graph starts at the encoder outputs the gates and decoders read, and no
gradient is kept for any weight, so the cost is one decoder backward per target and window.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ciml.config import ModelCard


def layer_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of one layer: (B, C, *S) activation and gradient -> (B, 1, *S), ReLU'd."""
    weights = gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)
    return F.relu((weights * activation).sum(dim=1, keepdim=True))


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


def cam_layers(network, windows: torch.Tensor, present: torch.Tensor | None = None):
    """Forward pass whose graph starts at the encoder outputs that gates and decoders read.

    Returns:
        (output, features): the network's NetOutput and the per-modality feature lists, in
        which the gated levels and the deepest level are graph leaves.
    """
    card: ModelCard = network.card
    reads = set(network.gate_levels) | {len(card.network.features) - 1}
    with torch.no_grad():
        features = network.encode(windows)
    features = {m: [f.detach().requires_grad_(lv in reads) for lv, f in enumerate(fs)] for m, fs in features.items()}
    with torch.enable_grad():
        output = network.fuse(features, present)
    return output, features


def target_layer_cams(network, windows: torch.Tensor, threshold: float, present: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, dict[str, dict[tuple[str, int], torch.Tensor]]]:
    """Logits and every (target, layer) Grad-CAM of a batch of windows, each at its layer's resolution.

    What other Grad-CAM implementations (Captum's ``LayerGradCam``) compute layer by layer;
    :func:`target_cams` brings them to the window and sums them per modality.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        threshold: probability that makes a voxel part of a target (the card's).
        present: (B, M) modalities given (absent ones send no message).

    Returns:
        logits (B, T, *S) detached, and ``cams[target][(modality, level)]`` (B, 1, *S_level):
        the primary's map at its deepest encoder level and each auxiliary's at every gated
        level (its gate's message), in that order.
    """
    card: ModelCard = network.card
    deepest = len(card.network.features) - 1
    with frozen(network), torch.enable_grad():
        output, features = cam_layers(network, windows, present)
        logits = output.logits
        cams: dict[str, dict[tuple[str, int], torch.Tensor]] = {}
        for s in card.subtasks:
            layers = {(s.primary, deepest): features[s.primary][deepest]}
            layers |= {(a, lv): output.gates[(s.name, a, lv)].message
                       for a in s.auxiliaries for lv in network.gate_levels}
            for t in s.targets:
                # Nothing predicted: the score is 0 and so are its gradients and maps.
                score = region_score(logits[:, card.target_index(t)], threshold)
                grads = torch.autograd.grad(score, list(layers.values()), retain_graph=True)
                cams[t] = {key: layer_cam(act.detach(), grad) for (key, act), grad in zip(layers.items(), grads)}
    return logits.detach(), cams


def target_cams(network, windows: torch.Tensor, threshold: float, present: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """Logits and every (target, modality) Grad-CAM of a batch of windows, at window size.

    Each layer's map of :func:`target_layer_cams` upsampled to the window; an auxiliary's
    maps at its gated levels summed. Arguments as there.

    Returns:
        logits (B, T, *S) detached, and ``cams[target][modality]`` (B, 1, *S) for the
        modalities of the target's sub-task (the others have no map).
    """
    size, mode = windows.shape[2:], "trilinear" if windows.dim() == 5 else "bilinear"
    logits, layer_maps = target_layer_cams(network, windows, threshold, present)
    cams: dict[str, dict[str, torch.Tensor]] = {}
    for t, maps in layer_maps.items():
        cams[t] = {}
        for (m, _), cam in maps.items():
            up = F.interpolate(cam, size=size, mode=mode, align_corners=False)
            cams[t][m] = cams[t][m] + up if m in cams[t] else up
    return logits, cams
