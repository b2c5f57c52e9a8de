"""DTC: the signed distance, the ramp, the two loss terms, and training with them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.config import card_from_dict
from ciml.losses import CIMLLoss, DTCLoss, sigmoid_rampup, signed_distance
from ciml.nn import CIMLNet
from ciml.nn.output import NetOutput
from ciml.training.objective import Objective


def _card(**dtc):
    card = tiny(multimodal_dict(2), level_set_head=True)
    card["training"]["dtc"] = dtc
    return card_from_dict(card)


def _cube(shape=TINY_SHAPE, lo=4, hi=12):
    y = np.zeros((1, 1, *shape), dtype=np.float32)
    y[0, 0, lo:hi, lo:hi, lo:hi] = 1
    return y


def _regions(batch=2):
    y = torch.zeros(batch, 2, *TINY_SHAPE)
    y[:, 0, 3:12, 4:13, 2:11] = 1
    y[:, 1, 5:9, 6:10, 4:8] = 1
    return y


def test_signed_distance_of_a_cube():
    sdf = signed_distance(_cube())
    assert sdf.shape == (1, 1, *TINY_SHAPE) and sdf.dtype == np.float32
    assert sdf.min() >= -1 and sdf.max() <= 1
    assert sdf.min() == -1 and sdf.max() == 1  # min-max normalised on each side
    inner, outer, face = sdf[0, 0, 6:10, 6:10, 6:10], sdf[0, 0, 0:2], sdf[0, 0, 4, 4:12, 4:12]
    assert (inner < 0).all() and (outer > 0).all()
    assert np.abs(face).max() == 0  # the region's inner boundary
    assert sdf[0, 0, 8, 8, 8] == -1  # deepest inside
    assert sdf[0, 0, 3, 8, 8] > 0 and sdf[0, 0, 3, 8, 8] < 0.2  # just outside, close to 0


def test_signed_distance_handles_empty_full_and_tensor_input():
    empty = signed_distance(np.zeros((1, 2, 6, 6, 6)))
    assert (empty == 0).all()
    full = signed_distance(np.ones((1, 1, 6, 6, 6)))
    assert (full == -1).all()
    tensor = torch.from_numpy(_cube())
    out = signed_distance(tensor)
    assert isinstance(out, torch.Tensor) and out.device == tensor.device
    np.testing.assert_array_equal(out.numpy(), signed_distance(_cube()))
    two_d = signed_distance(np.pad(np.ones((1, 1, 4, 4)), ((0, 0), (0, 0), (2, 2), (2, 2))))
    assert two_d[0, 0, 0, 0] == 1 and two_d[0, 0, 4, 4] < 0


def test_ramp_starts_near_zero_and_reaches_the_weight():
    assert sigmoid_rampup(0, 200) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(100, 200) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(200, 200) == 1.0 and sigmoid_rampup(10_000, 200) == 1.0
    assert sigmoid_rampup(0, 0) == 1.0
    loss = DTCLoss(_card(consistency_weight=0.4, consistency_ramp_steps=50))
    assert loss.ramp(0) < 0.01 * 0.4
    assert loss.ramp(50) == pytest.approx(0.4) and loss.ramp(51) == pytest.approx(0.4)
    assert DTCLoss(_card(consistency_ramp_steps=0)).ramp(0) == pytest.approx(0.1)


def _output(card, seed=0):
    torch.manual_seed(seed)
    net = CIMLNet(card).train()
    x = torch.randn(2, len(card.modalities), *TINY_SHAPE)
    return net, x, net.forward_features(x)


def test_consistency_is_zero_when_the_heads_agree():
    card = _card()
    _, _, out = _output(card)
    agree = dataclasses.replace(out, level_set=-out.logits.detach() / card.training.dtc.level_set_k)
    loss = DTCLoss(card)
    assert loss(agree, None, step=1000).consistency.item() < 1e-12
    assert loss(out, None, step=1000).consistency.item() > 0


def test_unlabelled_batches_get_only_the_consistency_term():
    card = _card(consistency_ramp_steps=0)
    _, _, out = _output(card)
    terms = DTCLoss(card)(out, None, step=0)
    assert terms.level_set is None
    assert terms.total.item() == pytest.approx(0.1 * terms.consistency.item())
    labelled = DTCLoss(card)(out, _regions(), step=0)
    assert labelled.level_set is not None and labelled.level_set > 0
    expected = 0.1 * labelled.consistency.item() + 0.3 * labelled.level_set.item()
    assert labelled.total.item() == pytest.approx(expected)


def test_mixed_batches_regress_only_the_labelled_rows():
    card = _card()
    _, _, out = _output(card)
    regions = _regions()
    sdf = signed_distance(regions)
    loss = DTCLoss(card)
    mixed = loss(out, regions, step=0, labelled=torch.tensor([True, False]))
    expected = (out.level_set[:1] - sdf[:1]).pow(2).mean()
    assert mixed.level_set.item() == pytest.approx(expected.item())
    given = loss(out, regions, step=0, labelled=torch.tensor([True, False]), sdf=sdf)
    assert given.level_set.item() == pytest.approx(expected.item())
    none = loss(out, regions, step=0, labelled=torch.tensor([False, False]))
    assert none.level_set is None


def test_a_mixed_batch_weighs_the_consistency_once_as_dtc_does():
    card = _card(consistency_ramp_steps=0, level_set_weight=0.0, level_set_k=1.0)  # w = 0.1
    shape = (2, 2, 4, 4, 4)
    level_set = torch.zeros(shape)
    level_set[1] = math.log(3)
    out = NetOutput(logits=torch.zeros(shape), kl=torch.zeros(()), level_set=level_set)
    regions = torch.zeros(1, 2, 4, 4, 4)  # sample 0 is labelled, sample 1 is not
    regions[0, :, 1:3, 1:3, 1:3] = 1
    # Sample 0: sigmoid(0) = 1/2 on both sides, consistency 0. Sample 1: sigmoid(-ln 3) = 1/4,
    # (1/2 - 1/4)^2 = 1/16. DTC's one mean over the batch: 1/32, times w: 0.1/32 = 0.003125
    # (a mean per part, summed, gave 0.1/16: twice DTC's weight).
    _, logs = Objective(card)(out, regions, None, n_labelled=1, step=0)
    assert logs["dtc"] == pytest.approx(0.1 / 32)
    assert logs["dtc_unlabelled"] == pytest.approx(1 / 16)
    rows = torch.tensor([True, False])
    only_labelled = DTCLoss(card)(out, regions, step=0, labelled=rows)  # regions of the labelled rows only
    assert only_labelled.total.item() == pytest.approx(0.1 / 32)


def test_gradients_reach_the_level_set_head():
    card = _card(consistency_ramp_steps=0)
    net, x, out = _output(card)
    DTCLoss(card)(out, None, step=0).total.backward()  # consistency alone trains both heads
    for decoder in net.decoders.values():
        assert decoder.level_set.conv.conv.weight.grad.abs().sum() > 0
        assert decoder.head.conv.conv.weight.grad.abs().sum() > 0


def test_dtc_needs_the_level_set_head():
    card = card_from_dict(multimodal_dict(2))
    out = CIMLNet(card).forward_features(torch.randn(1, 2, *TINY_SHAPE))
    with pytest.raises(ValueError, match="level_set_head"):
        DTCLoss(card)(out, None, step=0)


def test_a_few_steps_reduce_the_dtc_loss():
    card = _card(consistency_ramp_steps=0, consistency_weight=1.0)
    net, x, _ = _output(card, seed=1)
    y = _regions()
    sdf = signed_distance(y)
    supervised, dtc = CIMLLoss(card), DTCLoss(card)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for step in range(10):
        out = net.forward_features(x)
        terms = dtc(out, y, step=step, sdf=sdf)
        total = supervised(out, y).total + terms.total
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append((total.item(), terms.level_set.item()))
    assert all(np.isfinite(history).ravel())
    assert history[-1][0] < history[0][0] and history[-1][1] < history[0][1]
