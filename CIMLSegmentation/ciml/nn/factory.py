"""Building a network by architecture name from a model card."""

from __future__ import annotations

from torch import nn

from ciml.choices import ARCHITECTURES
from ciml.config import ModelCard
from ciml.errors import CIMLError
from ciml.nn.ciml_net import CIMLNet
from ciml.nn.early_fusion import EarlyFusionNet
from ciml.nn.maml import MAMLNet


def build_network(card: ModelCard, arch: str = "ciml", options: dict | None = None) -> nn.Module:
    """The network of architecture ``arch`` for ``card`` (weights freshly initialised).

    Args:
        card: the model card.
        arch: one of :data:`ARCHITECTURES`.
        options: the network's ``options`` as a bundle recorded them (e.g. the early-fusion
            widths), so that a loaded network is exactly the saved one.
    """
    options = dict(options or {})
    if arch == "ciml":
        return CIMLNet(card, **options)
    if arch == "early-fusion":
        features = options.pop("features", None)
        return EarlyFusionNet(card, tuple(features) if features else None, **options)
    if arch == "maml":
        return MAMLNet(card, **options)
    raise CIMLError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
