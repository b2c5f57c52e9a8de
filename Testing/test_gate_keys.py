"""CIMLNet.gate_keys: the one order of the gates, which the network's outputs and weights follow."""

from __future__ import annotations

import torch
from conftest import TINY_SHAPE, multimodal_dict

from ciml.config import card_from_dict
from ciml.nn import CIMLNet


def test_gate_keys_are_sub_task_then_auxiliary_then_level_and_the_outputs_follow_them():
    raw = multimodal_dict(3)
    raw["network"]["gate_levels"] = [-1, 0]  # given deepest first: the keys go shallowest first
    card = card_from_dict(raw)
    net = CIMLNet(card).eval()
    deepest = len(card.network.features) - 1
    assert net.gate_keys() == [("a", "m1", 0), ("a", "m1", deepest), ("a", "m2", 0), ("a", "m2", deepest),
                               ("b", "m0", 0), ("b", "m0", deepest), ("b", "m1", 0), ("b", "m1", deepest)]
    assert net.gate_keys("b") == net.gate_keys()[4:]
    assert list(net.gates) == ["__".join(map(str, key)) for key in net.gate_keys()]
    with torch.no_grad():
        out = net.forward_features(torch.randn(1, 3, *TINY_SHAPE))
    assert list(out.gates) == net.gate_keys()
