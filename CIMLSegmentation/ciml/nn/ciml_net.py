"""CIML: task decomposition by modality plus gated message passing between modalities."""

from __future__ import annotations

import torch
from torch import nn

from ciml.config import ModelCard
from ciml.nn.decoder import SubTaskDecoder
from ciml.nn.encoder import ModalityEncoder
from ciml.nn.gate import CrossModalityInformationGate
from ciml.nn.output import NetOutput


def _gate_key(subtask: str, auxiliary: str, level: int) -> str:
    # ModuleDict keys cannot hold tuples; this one is also the weights' name in the bundle.
    return f"{subtask}__{auxiliary}__{level}"


class CIMLNet(nn.Module):
    """The CIML network described by a model card.

    One :class:`ModalityEncoder` per modality that some sub-task uses (shared between
    sub-tasks), one :class:`SubTaskDecoder` per sub-task fed by its primary's encoder, and at
    each of ``card.network.gate_levels`` one :class:`CrossModalityInformationGate` per
    (sub-task, auxiliary) whose message is added to the primary's features at that level.

    Args:
        card: the model card; its modalities, targets, sub-tasks and ``network`` section fix
            every size.

    Shapes: ``forward((B, M, *S)) -> (B, T, *S)`` logits, M modalities and T targets in the
    card's order, S divisible by ``2 ** (len(features) - 1)``.
    """

    def __init__(self, card: ModelCard):
        super().__init__()
        self.card = card
        net = card.network
        self.gate_levels = net.resolved_gate_levels()
        used = {m for s in card.subtasks for m in (s.primary, *s.auxiliaries)}
        self.encoders = nn.ModuleDict({
            m: ModalityEncoder(net.spatial_dims, net.features, net.kernel_size, net.norm, net.dropout)
            for m in card.modality_names if m in used})
        self.decoders = nn.ModuleDict({
            s.name: SubTaskDecoder(net.spatial_dims, net.features, len(s.targets), net.kernel_size,
                                   net.norm, net.dropout)
            for s in card.subtasks})
        self.gates = nn.ModuleDict({
            _gate_key(s.name, a, lv): CrossModalityInformationGate(
                net.spatial_dims, net.features[lv], net.gate_bottleneck, net.gate_attention)
            for s in card.subtasks for a in s.auxiliaries for lv in self.gate_levels})
        # Output channel of each target, so the sub-tasks' logits land in the card's order.
        order = [t for s in card.subtasks for t in s.targets]
        self.register_buffer("_target_order", torch.tensor([order.index(t) for t in card.target_names]),
                             persistent=False)

    @property
    def options(self) -> dict:
        """What a bundle records besides the card to rebuild this network: nothing."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits

    def encode(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Features of every used modality at every level. x: (B, M, *S)."""
        return {m: self.encoders[m](x[:, i:i + 1]) for i, m in enumerate(self.card.modality_names)
                if m in self.encoders}

    def fuse(self, features: dict[str, list[torch.Tensor]]) -> NetOutput:
        """Gate the auxiliaries' messages into each primary, decode every sub-task."""
        logits, gates = [], {}
        for s in self.card.subtasks:
            skips = list(features[s.primary])
            for lv in self.gate_levels:
                for a in s.auxiliaries:
                    g = self.gates[_gate_key(s.name, a, lv)](features[s.primary][lv], features[a][lv])
                    gates[(s.name, a, lv)] = g
                    skips[lv] = skips[lv] + g.message
            logits.append(self.decoders[s.name](skips))
        kl = torch.stack([g.kl for g in gates.values()]).mean() if gates else logits[0].new_zeros(())
        return NetOutput(logits=torch.cat(logits, dim=1)[:, self._target_order], kl=kl, gates=gates,
                         encoder_features={m: f[-1] for m, f in features.items()})

    def forward_features(self, x: torch.Tensor) -> NetOutput:
        if x.shape[1] != len(self.card.modalities):
            raise ValueError(f"expected {len(self.card.modalities)} modality channels "
                             f"({', '.join(self.card.modality_names)}), got {x.shape[1]}")
        return self.fuse(self.encode(x))
