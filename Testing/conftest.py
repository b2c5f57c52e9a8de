"""Shared fixtures: small model cards that build fast networks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ciml.config import card_from_dict, preset_dict

TINY_NETWORK = {"features": [4, 8, 16]}
TINY_SHAPE = [16, 16, 16]


def tiny(card: dict[str, Any], **network: Any) -> dict[str, Any]:
    """A copy of a card dict with a tiny network and window, so tests run in milliseconds."""
    card = copy.deepcopy(card)
    card["network"] = {**card.get("network", {}), **TINY_NETWORK, **network}
    card["inference"] = {**card.get("inference", {}), "roi_size": TINY_SHAPE}
    card["training"] = {**card.get("training", {}), "patch_size": TINY_SHAPE}
    return card


def multimodal_dict(n_modalities: int) -> dict[str, Any]:
    """A card with n modalities: two sub-tasks, each primary taking every other as auxiliary."""
    names = [f"m{i}" for i in range(n_modalities)]
    return tiny({
        "name": f"mm{n_modalities}",
        "modalities": [{"name": n} for n in names],
        "targets": [{"name": "outer", "label": 1, "includes": [1, 2]}, {"name": "inner", "label": 2}],
        "subtasks": [
            {"name": "a", "targets": ["outer"], "primary": names[0], "auxiliaries": names[1:]},
            {"name": "b", "targets": ["inner"], "primary": names[-1], "auxiliaries": names[:-1]},
        ],
        "reference": names[0],
    })


@pytest.fixture
def tiny_preset():
    """tiny_preset("brats") -> a validated brats card with a tiny network."""
    return lambda name, **network: card_from_dict(tiny(preset_dict(name), **network))
