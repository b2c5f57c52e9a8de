"""The output prior: every sigmoid head starts at its own target's foreground rate."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_SHAPE, tiny

from ciml.choices import ARCHITECTURES
from ciml.config import card_from_dict, preset_dict
from ciml.errors import CardError
from ciml.nn import build_network
from ciml.nn.output_prior import RATE_FLOOR, foreground_rates, set_output_prior


def test_rates_are_each_targets_share_of_the_voxels():
    first = torch.zeros(2, 3, 4, 4, 4)
    first[0, 0, :2] = 1  # target 0: 32 voxels in crop 0
    first[1, 1, 0, 0, 0] = 1  # target 1: 1 voxel in crop 1
    second = torch.zeros(1, 3, 4, 4, 4)
    second[0, 0, 0] = 1  # target 0: 16 voxels more
    rates = foreground_rates(torch.cat([first, second]))
    assert torch.allclose(rates, torch.tensor([48 / 192, 1 / 192, 0.0]))


def _card_with_subtasks_out_of_target_order():
    """BraTS with the core decoder first, so the network's channel order (TC, ET, WT) is not the
    card's (WT, TC, ET): a bias set on the wrong channel would show."""
    card = preset_dict("brats")
    card["subtasks"] = card["subtasks"][::-1]
    return card


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_output_starts_at_its_targets_rate(arch):
    card = card_from_dict(tiny(_card_with_subtasks_out_of_target_order(), modality_heads=arch == "ciml"))
    net = build_network(card, arch).eval()
    rates = torch.tensor([0.05, 0.01, 0.0])  # WT, TC, ET; ET never seen: the floor
    heads = net.output_heads()
    set_output_prior(heads, rates)
    with torch.no_grad():
        for conv, _ in heads:
            conv.weight.zero_()  # what is left of each head is its bias
        out = net.forward_features(torch.randn(1, 4, *TINY_SHAPE))
    p = rates.clamp(min=RATE_FLOOR)
    expected = torch.log(p / (1 - p))
    for t in range(3):
        assert torch.allclose(out.logits[:, t], expected[t].float()), card.target_names[t]
    for scales in out.branch_scales.values():  # MAML's branches, every scale
        for logits in scales:
            assert torch.allclose(logits, expected.float().reshape(1, 3, 1, 1, 1).expand_as(logits))


def test_a_fresh_head_starts_near_one_half_without_the_prior():
    card = card_from_dict(tiny(preset_dict("brats")))
    net = build_network(card, "ciml").eval()
    with torch.no_grad():
        p = torch.sigmoid(net(torch.randn(1, 4, *TINY_SHAPE)))
    # what the prior is there to change: a 0.1 % target is predicted at about 0.5 everywhere
    assert 0.2 < p.mean() < 0.8
    set_output_prior(net.output_heads(), torch.full((3,), 1e-3))
    with torch.no_grad():
        p = torch.sigmoid(net(torch.randn(1, 4, *TINY_SHAPE)))
    assert p.mean() < 0.01 and abs(math.log(p.mean() / 1e-3)) < math.log(5)


def test_an_unknown_output_prior_is_a_card_error():
    card = preset_dict("shapes")
    card["training"]["output_prior"] = "retina"
    with pytest.raises(CardError, match="training.output_prior"):
        card_from_dict(card)


def test_a_bundle_written_before_the_field_reads_as_trained_without_the_prior():
    from ciml.bundle.metadata import stored_card

    old = preset_dict("brats")
    old["training"].pop("output_prior", None)
    assert card_from_dict(stored_card({"card": old})).training.output_prior == "none"
    assert card_from_dict(old).training.output_prior == "foreground"  # a new card: the default
