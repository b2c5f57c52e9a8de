"""What each modality does: the model's output with that modality withheld.

The effect of modality m on target t is what changes when m is marked absent, exactly as
`ciml segment` without m would see it (the ``present`` mask): an absent auxiliary sends no
message, and an absent primary's encoder reads an all-zero channel. Because messages are *added*
to the primary's features, this is cheap to compute inside one pass:

- every encoder runs once; a withheld auxiliary's decoder input is the full input minus that
  auxiliary's messages, so no encoder or gate runs again;
- a withheld primary's encoder output on an all-zero window is the same for every window (conv,
  instance norm and activation of a constant are constant), so it is computed once per window
  shape and reused; only that sub-task's gates run again;
- only the decoders of the sub-tasks m reaches run again, without autograd, and only in windows
  where the sub-task predicts something: a window whose targets all stay below
  ``inference.effect_floor`` keeps the full output (a modality whose absence would *create* a
  target there is not seen; see docs/segment.md).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

import torch

from ciml.config import ModelCard
from ciml.inference.sliding_window import autocast, batch_mask, predict_windows
from ciml.nn import CIMLNet


class WithheldPredictor:
    """Per batch of windows: logits with every given modality and with each one withheld.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode.
        present: (M,) 1 for the modalities given; ``None``: all given. A modality already
            absent has no effect (its withheld output is the full output).
        device: where the windows run (for mixed precision).

    Shapes: ``__call__(windows (B, M, *S)) -> {"logits": (B, T, *S), "withheld": (B, M*T, *S)}``,
    the withheld logits modality-major (all targets of modality 0 first), float32.
    """

    def __init__(self, network: CIMLNet, present: torch.Tensor | None, device: torch.device):
        self.network, self.card, self.device = network, network.card, device
        self.present = present
        self._absent_features: dict[tuple, list[torch.Tensor]] = {}

    def absent_features(self, modality: str, like: torch.Tensor) -> list[torch.Tensor]:
        """The encoder features of an all-zero window of ``like``'s shape, computed once."""
        key = (modality, tuple(like.shape), like.dtype, like.device)
        if key not in self._absent_features:
            self._absent_features[key] = self.network.encoders[modality](torch.zeros_like(like[:, :1]))
        return self._absent_features[key]

    def __call__(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        net, card = self.network, self.card
        present = batch_mask(self.present, windows)
        floor = torch.logit(torch.tensor(card.inference.effect_floor)).item()
        with autocast(self.device):
            features = net.encode(windows)
            full, withheld = {}, {}
            for s in card.subtasks:
                skips, gates = net.gated_skips(s.name, features, present)
                full[s.name] = net.decode(s.name, skips)
                if float(full[s.name].max()) < floor:
                    continue  # nothing here for this sub-task: no modality changes it (see above)
                withheld.update(self._without_auxiliaries(s.name, skips, gates))
                del skips, gates  # every message of the sub-task: freed before the primary's turn
                if self._given(s.primary):
                    without = dict(features)
                    without[s.primary] = self.absent_features(s.primary, windows)
                    mask = _without(present, card.modality_index(s.primary), windows)
                    skips_without, _ = net.gated_skips(s.name, without, mask)
                    withheld[(s.name, s.primary)] = net.decode(s.name, skips_without)
        return {"logits": self._assemble(full, {}), "withheld": torch.cat(
            [self._assemble(full, {k[0]: v for k, v in withheld.items() if k[1] == m})
             for m in card.modality_names], dim=1)}

    def _without_auxiliaries(self, subtask: str, skips: list[torch.Tensor], gates: dict
                             ) -> dict[tuple[str, str], torch.Tensor]:
        """(sub-task, auxiliary) -> the sub-task's logits without that auxiliary's messages."""
        out = {}
        # gate_keys lists each auxiliary's gates together, level after level.
        for a, keys in groupby(self.network.gate_keys(subtask), key=lambda key: key[1]):
            if self._given(a):
                reduced = list(skips)
                for key in keys:
                    reduced[key[2]] = skips[key[2]] - gates[key].message
                out[(subtask, a)] = self.network.decode(subtask, reduced)
        return out

    def _given(self, modality: str) -> bool:
        return self.present is None or bool(self.present[self.card.modality_index(modality)])

    def _assemble(self, full: dict[str, torch.Tensor], replaced: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sub-tasks' logits in the card's target order, some sub-tasks' replaced."""
        by_target = {}
        for s in self.card.subtasks:
            logits = replaced.get(s.name, full[s.name])
            by_target.update({t: logits[:, i:i + 1] for i, t in enumerate(s.targets)})
        return torch.cat([by_target[t] for t in self.card.target_names], dim=1).float()


def _without(present: torch.Tensor | None, index: int, like: torch.Tensor) -> torch.Tensor:
    """(B, M) presence with modality ``index`` marked absent."""
    mask = torch.ones(like.shape[0], like.shape[1], device=like.device) if present is None else present.clone()
    mask[:, index] = 0
    return mask


def predict_withheld(network: CIMLNet, image: torch.Tensor, card: ModelCard, device: torch.device,
                     on_window: Callable[[int, int], None] | None = None,
                     present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a whole image with every given modality, and with each modality withheld.

    Args:
        network: a :class:`~ciml.nn.CIMLNet` in eval mode on ``device``.
        image: (M, *S) the normalised modalities in card order.
        card: the model card (window, blending, ``inference.effect_floor``).
        device: where the windows run.
        on_window: called as ``on_window(done, total)`` after each batch of windows.
        present: (M,) 1 for the modalities given; ``None``: all given.

    Returns:
        (T, *S) logits and (M, T, *S) logits with each modality withheld, float32 on the CPU,
        both blended with the same window weights, so each withheld output is what a whole run
        without that modality gives.
    """
    out = predict_windows(WithheldPredictor(network, present, device), image, card, device, on_window)
    withheld = out["withheld"]
    return out["logits"], withheld.reshape(len(card.modalities), len(card.targets), *withheld.shape[1:])
