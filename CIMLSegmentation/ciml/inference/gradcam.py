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


def target_cams(network, windows: torch.Tensor, threshold: float,
                present: torch.Tensor | None = None, layer_resolution: bool = False
                ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """Logits and every (target, modality) Grad-CAM of a batch of windows.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        windows: (B, M, *S) input windows.
        threshold: probability that makes a voxel part of a target (the card's).
        present: (B, M) modalities given (absent ones send no message).
        layer_resolution: return each layer's map at its own resolution instead of the
            window's (for comparing with other Grad-CAM implementations; auxiliaries then map
            level -> map).

    Returns:
        logits (B, T, *S) detached, and ``cams[target][modality]`` (B, 1, *S) at window size.
    """
    card: ModelCard = network.card
    size, mode = windows.shape[2:], "trilinear" if windows.dim() == 5 else "bilinear"
    with frozen(network), torch.enable_grad():
        output, features = cam_layers(network, windows, present)
        logits = output.logits
        cams: dict[str, dict[str, torch.Tensor]] = {}
        for s in card.subtasks:
            primary = features[s.primary][-1]
            messages = [(a, lv, output.gates[(s.name, a, lv)].message) for a in s.auxiliaries for lv in network.gate_levels]
            inputs = [primary] + [msg for _, _, msg in messages]
            for t in s.targets:
                # Nothing predicted: the score is 0 and so are its gradients and maps.
                score = region_score(logits[:, card.target_index(t)], threshold)
                grads = torch.autograd.grad(score, inputs, retain_graph=True)
                maps = {s.primary: layer_cam(primary.detach(), grads[0])}
                for (a, lv, msg), grad in zip(messages, grads[1:]):
                    maps.setdefault(a, {})[lv] = layer_cam(msg.detach(), grad)
                cams[t] = _assemble(maps, s.primary, size, mode, layer_resolution)
    return logits.detach(), cams


def _assemble(maps: dict, primary: str, size, mode: str, layer_resolution: bool) -> dict:
    if layer_resolution:
        return maps
    def up(cam: torch.Tensor) -> torch.Tensor:
        return F.interpolate(cam, size=size, mode=mode, align_corners=False)

    return {m: up(v) if m == primary else sum(up(x) for x in v.values()) for m, v in maps.items()}
