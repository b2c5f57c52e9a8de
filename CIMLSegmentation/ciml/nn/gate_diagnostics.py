"""Gate diagnostics: what each Cross-modality Information Gate of a CIML network passes on.

For a batch of windows, every gate (sub-task, auxiliary, encoder level) of a
:class:`~ciml.nn.ciml_net.CIMLNet` is measured in eval mode, as inference runs it:

- **KL per voxel** (nats): ``KL(N(mean, exp(log_var)) || N(0, I))`` summed over the C channels,
  averaged over batch and voxels: :func:`~ciml.nn.gate.gaussian_kl`, computed with the
  log-variance head although inference itself skips it;
- **active channels**: channels whose KL, averaged over batch and voxels, exceeds
  :data:`ACTIVE_CHANNEL_KL` nats, out of C;
- **mean sigma**: ``exp(0.5 * log_var)`` averaged over channels, batch and voxels (1 is the prior's);
- **message ratio**: rms of the message (``attention * mean`` in eval) over rms of the primary's
  encoder features at that level, which the message is added to;
- **attention mean and spread**: mean and (population) standard deviation of the sigmoid
  attention map over batch and voxels;
- **collapsed**: no active channel and a message ratio below :data:`COLLAPSED_MESSAGE_RATIO`.

A gate without a bottleneck (the "attention only" ablation) has no posterior: its KL, active
channels and sigma are ``None``, and it is collapsed when its message ratio alone is below the
threshold. See ``docs/training.md`` (the information gate) and ``docs/bundle-format.md``
(``ciml info --gates``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ciml.errors import CIMLError
from ciml.nn.ciml_net import CIMLNet
from ciml.nn.gate import LOG_VAR_LIMIT, CrossModalityInformationGate, channel_kl, pointwise

ACTIVE_CHANNEL_KL = 0.01
"""Nats per voxel above which a latent channel counts as active (carries information past the
prior), the measure by which the latent gate was found collapsed. A channel at the prior has
KL 0; 0.01 nats is a mean shift of about 0.14 prior standard deviations."""

COLLAPSED_MESSAGE_RATIO = 0.05
"""Message rms over primary rms below which a gate passes (almost) nothing. A message under 1/20
of the features it is added to moves the decoder's input by under 5 %. The gate study's ``shapes``
measurement separates the two kinds of gate on each side of it: the redundant ``echo`` gate sends
0.012 of the primary's rms (withholding echo changes 0 % of the prediction), the complementary
``cue`` gate 0.164 (withholding cue changes 61 %)."""


@dataclass
class GateDiagnostics:
    """What one gate passes on, measured on a batch of windows in eval mode.

    Attributes:
        subtask, auxiliary, level: the gate's key, as :meth:`CIMLNet.gate` takes it (``level``
            is the encoder level, 0 the finest).
        channels: latent channels C.
        kl: KL per voxel in nats (summed over channels), or ``None`` without a bottleneck.
        active_channels: channels with KL above :data:`ACTIVE_CHANNEL_KL`, or ``None`` without a
            bottleneck.
        sigma: mean posterior standard deviation ``exp(0.5 * log_var)``, or ``None`` without a
            bottleneck.
        message_ratio: rms of the message over rms of the primary's features at this level.
        attention_mean, attention_std: mean and population standard deviation of the attention
            map (1 and 0 without attention).
        collapsed: no active channel (or no bottleneck) and ``message_ratio`` below
            :data:`COLLAPSED_MESSAGE_RATIO`.
    """

    subtask: str
    auxiliary: str
    level: int
    channels: int
    kl: float | None
    active_channels: int | None
    sigma: float | None
    message_ratio: float
    attention_mean: float
    attention_std: float
    collapsed: bool

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean(dtype=torch.float64).sqrt())


@torch.no_grad()
def diagnose_gate(gate: CrossModalityInformationGate, primary: torch.Tensor, auxiliary: torch.Tensor,
                  subtask: str = "", auxiliary_name: str = "", level: int = 0) -> GateDiagnostics:
    """Measure one gate on given features, in eval mode (the gate's mode is restored after).

    Args:
        gate: the gate.
        primary: the primary's encoder features at the gate's level, (B, C, *S).
        auxiliary: the auxiliary's encoder features at that level, (B, C, *S).
        subtask, auxiliary_name, level: the gate's key, recorded in the result.
    """
    was_training = gate.training
    gate.eval()
    try:
        out = gate(primary, auxiliary)
        kl = active = sigma = None
        if gate.log_var is not None:
            # float32 per voxel, float64 sums: a full-resolution window has millions of voxels
            mean = pointwise(gate.mean, auxiliary)
            log_var = pointwise(gate.log_var, auxiliary).clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT)
            per_channel = channel_kl(mean, log_var, dtype=torch.float64)
            kl = float(per_channel.sum())
            active = int((per_channel > ACTIVE_CHANNEL_KL).sum())
            sigma = float(torch.exp(0.5 * log_var).mean(dtype=torch.float64))
        primary_rms = _rms(primary)
        ratio = _rms(out.message) / primary_rms if primary_rms > 0 else float("inf")
        attention = out.attention.double()
        collapsed = (not active) and ratio < COLLAPSED_MESSAGE_RATIO
        return GateDiagnostics(
            subtask=subtask, auxiliary=auxiliary_name, level=int(level), channels=int(primary.shape[1]),
            kl=kl, active_channels=active, sigma=sigma, message_ratio=ratio,
            attention_mean=float(attention.mean()), attention_std=float(attention.std(unbiased=False)),
            collapsed=bool(collapsed))
    finally:
        gate.train(was_training)


@torch.no_grad()
def gate_diagnostics(network: CIMLNet, windows: torch.Tensor) -> list[GateDiagnostics]:
    """Every gate of ``network`` measured on a batch of windows, in eval mode and without grad.

    Args:
        network: a CIML network (its mode is restored after).
        windows: (B, M, *S), the card's M modalities, S divisible by ``2 ** (levels - 1)``;
            every modality is taken as present.

    Returns:
        One :class:`GateDiagnostics` per gate, in :meth:`~ciml.nn.CIMLNet.gate_keys`' order.
    """
    if not isinstance(network, CIMLNet):
        raise TypeError(f"gate diagnostics need a CIMLNet, got {type(network).__name__}")
    was_training = network.training
    network.eval()
    try:
        features = network.encode(windows)
        primary = {s.name: s.primary for s in network.card.subtasks}
        return [diagnose_gate(network.gate(s, a, lv), features[primary[s]][lv], features[a][lv], s, a, lv)
                for s, a, lv in network.gate_keys()]
    finally:
        network.train(was_training)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_gate_table(diagnostics: list[GateDiagnostics]) -> str:
    """The diagnostics as a text table, one gate a line, with a header and a closing count."""
    header = ["sub-task", "auxiliary", "level", "KL/voxel", "active", "sigma", "msg/primary",
              "att mean", "att std", "verdict"]
    rows = [header] + [
        [d.subtask, d.auxiliary, str(d.level), _number(d.kl, 4),
         "-" if d.active_channels is None else f"{d.active_channels}/{d.channels}",
         _number(d.sigma, 3), _number(d.message_ratio, 4), _number(d.attention_mean, 3),
         _number(d.attention_std, 3), "collapsed" if d.collapsed else "ok"]
        for d in diagnostics]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    collapsed = sum(d.collapsed for d in diagnostics)
    lines.append(f"{collapsed} of {len(diagnostics)} gates collapsed (no channel above "
                 f"{ACTIVE_CHANNEL_KL} nats and message below {COLLAPSED_MESSAGE_RATIO} of the primary's rms)")
    return "\n".join(lines) + "\n"


def centred_window(image: np.ndarray, roi_size: tuple[int, ...] | list[int]) -> np.ndarray:
    """The window of ``roi_size`` at the centre of ``image`` (M, *S); axes shorter than the window
    are padded with zeros on both sides, as sliding-window inference pads them."""
    spatial = image.shape[1:]
    if len(roi_size) != len(spatial):
        raise CIMLError(f"the card's window {list(roi_size)} does not fit the case's {len(spatial)}D images")
    pads = [(0, 0)] + [((r - n) // 2, r - n - (r - n) // 2) if n < r else (0, 0) for n, r in zip(spatial, roi_size)]
    image = np.pad(image, pads)
    starts = [(n - r) // 2 for n, r in zip(image.shape[1:], roi_size)]
    return np.ascontiguousarray(image[(slice(None), *(slice(s, s + r) for s, r in zip(starts, roi_size)))])
