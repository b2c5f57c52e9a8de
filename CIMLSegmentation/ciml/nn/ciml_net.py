"""CIML: task decomposition by modality plus gated message passing between modalities."""

from __future__ import annotations

import torch
from torch import nn

from ciml.config import ModelCard
from ciml.nn.decoder import SubTaskDecoder
from ciml.nn.encoder import ModalityEncoder
from ciml.nn.gate import CrossModalityInformationGate
from ciml.nn.modality_head import ModalityHead
from ciml.nn.output import GateOutput, NetOutput
from ciml.nn.output_prior import OutputHeads


GateKey = tuple[str, str, int]  # (sub-task, auxiliary, encoder level)


def _gate_name(key: GateKey) -> str:
    # ModuleDict keys cannot hold tuples; this one is also the weights' name in the bundle.
    return "__".join(map(str, key))


class CIMLNet(nn.Module):
    """The CIML network described by a model card.

    One :class:`ModalityEncoder` per modality that some sub-task uses (shared between
    sub-tasks), one :class:`SubTaskDecoder` per sub-task fed by its primary's encoder, and at
    each of ``card.network.gate_levels`` one :class:`CrossModalityInformationGate` per
    (sub-task, auxiliary) whose message is added to the primary's features at that level.
    Optional parts from the card: a :class:`ModalityHead` per modality (PASSION) and a
    level-set head per decoder (DTC).

    Args:
        card: the model card; its modalities, targets, sub-tasks and ``network`` section fix
            every size.

    Shapes: ``forward((B, M, *S)) -> (B, T, *S)`` logits, M modalities and T targets in the
    card's order, S divisible by ``2 ** (len(features) - 1)``. ``forward_features`` also takes
    ``present`` (B, M): a modality absent from a case (its channel all zeros) sends no message.
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
                                   net.norm, net.dropout, level_set=net.level_set_head)
            for s in card.subtasks})
        self.modality_heads = nn.ModuleDict({
            m: ModalityHead(net.spatial_dims, net.features, len(card.targets))
            for m in self.encoders}) if net.modality_heads else None
        self.gates = nn.ModuleDict({
            _gate_name(key): CrossModalityInformationGate(
                net.spatial_dims, net.features[key[2]], net.gate_bottleneck, net.gate_attention,
                net.gate_message, card.training.free_bits)
            for key in self.gate_keys()})
        # Output channel of each target, so the sub-tasks' logits land in the card's order.
        order = [t for s in card.subtasks for t in s.targets]
        self.register_buffer("_target_order", torch.tensor([order.index(t) for t in card.target_names]),
                             persistent=False)

    @property
    def options(self) -> dict:
        """What a bundle records besides the card to rebuild this network: nothing."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only, (B, T, *S), every modality present: what inference needs. The same
        values as :meth:`forward_features`, which keeps every gate's output and every modality's
        features to the end; here no message outlives its skip, and the encoders' features go
        once every sub-task's skips hold their messages (at 1 mm, each is 134 MB a channel-16
        level of a 128^3 window)."""
        self._check_channels(x)
        features = self.encode(x)
        skips = [self.gated_skips(s.name, features)[0] for s in self.card.subtasks]
        del features
        logits = [self.decode(s.name, skips.pop(0)) for s in self.card.subtasks]  # each skip freed once decoded
        return torch.cat(logits, dim=1)[:, self._target_order]

    def output_heads(self) -> OutputHeads:
        """Every sigmoid head's 1x1 convolution with its targets' indices in the card
        (:mod:`ciml.nn.output_prior`): each decoder's head and, with PASSION's modality heads,
        their full-resolution level (the deeper levels' convolutions add to it)."""
        heads = [(self.decoders[s.name].head.conv.conv, [self.card.target_index(t) for t in s.targets])
                 for s in self.card.subtasks]
        if self.modality_heads is not None:
            every = list(range(len(self.card.targets)))
            heads += [(head.levels[0], every) for head in self.modality_heads.values()]
        return heads

    def gate_keys(self, subtask: str | None = None) -> list[GateKey]:
        """Every gate's (sub-task, auxiliary, level), in the card's order: sub-tasks, then each
        one's auxiliaries, then the gated levels shallowest first.

        Args:
            subtask: only this sub-task's gates; ``None``: every sub-task's.

        The one order of the gates: their weights in a bundle, :class:`~ciml.nn.output.NetOutput`
        ``gates``, the gate diagnostics' rows and every loop over the gates follow it.
        """
        return [(s.name, a, lv) for s in self.card.subtasks if subtask in (None, s.name)
                for a in s.auxiliaries for lv in self.gate_levels]

    def gate(self, subtask: str, auxiliary: str, level: int) -> CrossModalityInformationGate:
        """The gate through which ``auxiliary`` talks to ``subtask``'s primary at encoder ``level``.

        The one way to reach a gate from outside (its ``message`` is the layer Grad-CAM reads);
        :class:`~ciml.nn.output.NetOutput` ``gates`` are keyed by the same triple.
        """
        return self.gates[_gate_name((subtask, auxiliary, level))]

    def encode(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Features of every used modality at every level. x: (B, M, *S)."""
        return {m: self.encoders[m](x[:, i:i + 1]) for i, m in enumerate(self.card.modality_names)
                if m in self.encoders}

    def fuse(self, features: dict[str, list[torch.Tensor]], present: torch.Tensor | None = None) -> NetOutput:
        """Gate the auxiliaries' messages into each primary, decode every sub-task.

        Args:
            features: :meth:`encode`'s output.
            present: (B, M) 1 where a modality was given; absent auxiliaries send no message.

        Returns:
            The :class:`NetOutput`; its ``decoder_features`` hold each sub-task decoder's last
            features, (B, features[0], *S).
        """
        logits, level_sets, gates, fused, decoded = [], [], {}, {}, {}
        for s in self.card.subtasks:
            skips, messages = self.gated_skips(s.name, features, present)
            gates.update(messages)
            fused[s.name] = skips[-1]
            # The decoder's forward in two halves, so its last features are kept, not recomputed.
            decoded[s.name] = self.decoders[s.name].features(skips)
            task_logits, level_set = self.decoders[s.name].heads(decoded[s.name])
            logits.append(task_logits)
            level_sets.append(level_set)
        zero = logits[0].new_zeros(())
        kl = torch.stack([g.kl for g in gates.values()]).mean() if gates else zero
        kl_term = torch.stack([g.kl_term for g in gates.values()]).mean() if gates else zero
        order = self._target_order
        return NetOutput(
            logits=torch.cat(logits, dim=1)[:, order], kl=kl, kl_term=kl_term, gates=gates,
            encoder_features={m: f[-1] for m, f in features.items()}, fused_features=fused,
            branch_logits={m: head(features[m]) for m, head in self.modality_heads.items()}
            if self.modality_heads is not None else {},
            level_set=torch.cat(level_sets, dim=1)[:, order] if self.card.network.level_set_head else None,
            decoder_features=decoded)

    def gated_skips(self, subtask: str, features: dict[str, list[torch.Tensor]],
                    present: torch.Tensor | None = None
                    ) -> tuple[list[torch.Tensor], dict[GateKey, GateOutput]]:
        """A sub-task's decoder input: its primary's features plus, at each gated level, every
        auxiliary's message (zero for an absent auxiliary).

        Args:
            subtask: the sub-task's name.
            features: :meth:`encode`'s output.
            present: (B, M) 1 where a modality was given.

        Returns:
            The skips, one (B, features[lv], *S / 2**lv) tensor per level, and the gates' outputs
            keyed by (sub-task, auxiliary, level) in :meth:`gate_keys`' order. Messages are
            added, so a skip minus one auxiliary's message is what the decoder reads without
            that auxiliary.
        """
        primary = next(s.primary for s in self.card.subtasks if s.name == subtask)
        skips, gates = list(features[primary]), {}
        for key in self.gate_keys(subtask):
            _, a, lv = key
            g = self.gate(*key)(features[primary][lv], features[a][lv])
            if present is not None:
                g.message = g.message * _per_sample(present[:, self.card.modality_index(a)], g.message)
            gates[key] = g
            skips[lv] = skips[lv] + g.message
        return skips, gates

    def decode(self, subtask: str, skips: list[torch.Tensor]) -> torch.Tensor:
        """One sub-task's logits (B, targets of the sub-task, *S) from its skips, in the sub-task's
        target order."""
        return self.decoders[subtask](skips)[0]

    def forward_features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> NetOutput:
        self._check_channels(x)
        return self.fuse(self.encode(x), present)

    def _check_channels(self, x: torch.Tensor) -> None:
        if x.shape[1] != len(self.card.modalities):
            raise ValueError(f"expected {len(self.card.modalities)} modality channels "
                             f"({', '.join(self.card.modality_names)}), got {x.shape[1]}")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) values shaped to broadcast over a (B, C, *S) tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
