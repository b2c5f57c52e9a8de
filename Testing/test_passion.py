"""PASSION: modality dropping, the self-distillation terms, their weights, and training with them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.config import card_from_dict
from ciml.data.missing import apply_presence, presence_frequencies, sample_present
from ciml.losses import CIMLLoss, PassionLoss, binary_kl, inverse_frequency_weights
from ciml.nn import CIMLNet

NAMES = ("m0", "m1", "m2")


def _card(missing_rates=None):
    card = tiny(multimodal_dict(3), modality_heads=True)
    card["training"]["missing_rates"] = {"m1": 0.5, "m2": 0.2} if missing_rates is None else missing_rates
    return card_from_dict(card)


def _regions(batch=2, shape=TINY_SHAPE):
    """Nested cubes: 'outer' (channel 0) contains 'inner' (channel 1)."""
    y = torch.zeros(batch, 2, *shape)
    y[:, 0, 3:12, 4:13, 2:11] = 1
    y[:, 1, 5:9, 6:10, 4:8] = 1
    return y


def _forward(card, present, seed=0):
    torch.manual_seed(seed)
    net = CIMLNet(card).train()
    x = torch.randn(present.shape[0], len(card.modalities), *TINY_SHAPE)
    return net, apply_presence(x, present), net.forward_features(apply_presence(x, present), present)


# --- modality dropping -------------------------------------------------------------------

def test_sample_present_respects_the_rates_and_is_deterministic():
    rates = {"m1": 0.5, "m2": 0.8}
    rng = np.random.default_rng(0)
    draws = np.stack([sample_present(rng, NAMES, rates) for _ in range(20000)])
    assert draws.shape == (20000, 3) and draws.dtype == bool
    # m0 is never dropped, so conditioning on "some modality present" changes nothing here.
    np.testing.assert_allclose(1 - draws.mean(0), [0.0, 0.5, 0.8], atol=0.02)
    again = [sample_present(np.random.default_rng(7), NAMES, rates) for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        np.testing.assert_array_equal(sample_present(a, NAMES, rates), sample_present(b, NAMES, rates))


def test_sample_present_never_drops_everything():
    rng = np.random.default_rng(1)
    rates = {"m0": 0.9, "m1": 0.9, "m2": 0.9}
    draws = np.stack([sample_present(rng, NAMES, rates) for _ in range(5000)])
    assert draws.any(1).all()
    # Marginals follow the independent model conditioned on at least one present.
    np.testing.assert_allclose(draws.mean(0), presence_frequencies(NAMES, rates), atol=0.03)
    # Almost surely all dropped: the fallback keeps the lowest missing rate.
    nearly = {"m0": 1.0, "m1": 1.0 - 1e-9, "m2": 1.0}
    assert sample_present(rng, NAMES, nearly).tolist() == [False, True, False]


def test_sample_present_keeps_unavailable_modalities_absent():
    rng = np.random.default_rng(2)
    available = np.array([False, True, True])
    for _ in range(200):
        present = sample_present(rng, NAMES, {"m1": 0.7, "m2": 0.7}, available=available)
        assert not present[0] and present.any()


def test_sample_present_refuses_unknown_modalities():
    with pytest.raises(ValueError, match="unknown"):
        sample_present(np.random.default_rng(0), NAMES, {"t1": 0.5})


def test_apply_presence_zeroes_exactly_the_absent_channels():
    image = np.random.default_rng(0).normal(size=(3, 4, 4, 4)).astype(np.float32)
    out = apply_presence(image, np.array([True, False, True]))
    assert out.dtype == image.dtype and (out[1] == 0).all()
    np.testing.assert_array_equal(out[[0, 2]], image[[0, 2]])
    assert (image[1] != 0).any()  # a copy, the input is untouched
    batch = torch.randn(2, 3, 4, 4, 4)
    present = torch.tensor([[True, False, True], [False, True, True]])
    out = apply_presence(batch, present)
    for b in range(2):
        for m in range(3):
            assert torch.equal(out[b, m], batch[b, m] if present[b, m] else torch.zeros(4, 4, 4))


def test_inverse_frequency_weights_double_for_a_modality_missing_half_the_time():
    w = inverse_frequency_weights(("a", "b"), {"b": 0.5})
    assert w[1] / w[0] == pytest.approx(2.0)
    assert w.mean() == pytest.approx(1.0)
    w = inverse_frequency_weights(("a", "b", "c"), {"b": 0.5, "c": 1.0})
    assert w[2] == 0 and w[1] / w[0] == pytest.approx(2.0) and w[:2].mean() == pytest.approx(1.0)


# --- the distillation terms ---------------------------------------------------------------

def test_binary_kl_is_zero_for_equal_logits_and_positive_otherwise():
    z = torch.randn(2, 2, 4, 4, 4) * 5
    assert binary_kl(z, z).abs().max() < 1e-6
    assert (binary_kl(z + 1, z) > 0).all()
    assert torch.isfinite(binary_kl(z * 1e3, -z * 1e3)).all()


def test_pixel_term_is_zero_when_unimodal_equals_multimodal():
    card = _card()
    present = torch.tensor([[True, True, True], [True, False, True]])
    _, _, out = _forward(card, present)
    loss = PassionLoss(card).eval()
    same = dataclasses.replace(out, branch_logits={m: out.logits.detach().clone() for m in NAMES})
    terms = loss(same, _regions(), present)
    assert all(v.item() < 1e-6 for v in terms.pixel.values())
    terms = loss(out, _regions(), present)
    assert all(v.item() > 0 for v in terms.pixel.values())
    assert terms.total > 0


def test_absent_modalities_contribute_nothing():
    card = _card()
    present = torch.tensor([[True, False, True], [True, True, False]])
    _, _, out = _forward(card, present)
    out = dataclasses.replace(out, logits=out.logits.detach())
    loss = PassionLoss(card).eval()
    base = loss(out, _regions(), present)
    branch = {m: v.detach().clone() for m, v in out.branch_logits.items()}
    feats = {m: v.detach().clone() for m, v in out.encoder_features.items()}
    branch["m1"][0] = 100.0  # m1 absent from sample 0, m2 from sample 1
    branch["m2"][1] = torch.randn_like(branch["m2"][1]) * 50
    feats["m1"][0] = torch.randn_like(feats["m1"][0]) * 9
    feats["m2"][1] = float("nan")  # not even a NaN leaks through
    changed = dataclasses.replace(out, branch_logits=branch, encoder_features=feats)
    changed = loss(changed, _regions(), present)
    assert changed.total.item() == pytest.approx(base.total.item(), rel=1e-6)
    for m in NAMES:
        assert changed.pixel[m].item() == pytest.approx(base.pixel[m].item(), rel=1e-6)
        assert changed.prototype[m].item() == pytest.approx(base.prototype[m].item(), rel=1e-6)
    assert changed.preference == pytest.approx(base.preference)


def test_the_teacher_gets_no_gradient():
    card = _card()
    present = torch.ones(2, 3, dtype=torch.bool)
    _, _, out = _forward(card, present)
    leaf = lambda t: t.detach().clone().requires_grad_(True)  # noqa: E731
    out = dataclasses.replace(
        out, logits=leaf(out.logits),
        fused_features={s: leaf(v) for s, v in out.fused_features.items()},
        branch_logits={m: leaf(v) for m, v in out.branch_logits.items()},
        encoder_features={m: leaf(v) for m, v in out.encoder_features.items()})
    PassionLoss(card)(out, _regions(), present).total.backward()
    assert out.logits.grad is None
    assert all(v.grad is None for v in out.fused_features.values())
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in out.branch_logits.values())
    # The prototype term reaches the features of the lagging modalities (at least one lags).
    assert any(v.grad is not None and v.grad.abs().sum() > 0 for v in out.encoder_features.values())


def test_prototype_term_is_zero_for_identical_features():
    card = _card()
    present = torch.ones(2, 3, dtype=torch.bool)
    _, _, out = _forward(card, present)
    shared = out.fused_features["a"].detach()
    same = dataclasses.replace(out, fused_features={s: shared for s in out.fused_features},
                               encoder_features={m: shared.clone() for m in NAMES})
    terms = PassionLoss(card).eval()(same, _regions(), present)
    assert all(v.item() < 1e-10 for v in terms.prototype.values())
    terms = PassionLoss(card).eval()(out, _regions(), present)
    assert all(v.item() > 0 for v in terms.prototype.values())


def test_targets_absent_from_every_sample_give_no_prototype_term():
    card = _card()
    present = torch.ones(2, 3, dtype=torch.bool)
    _, _, out = _forward(card, present)
    terms = PassionLoss(card).eval()(out, torch.zeros(2, 2, *TINY_SHAPE), present)
    assert all(v.item() == 0 for v in terms.prototype.values())
    assert torch.isfinite(terms.total) and terms.total > 0  # the pixel term still counts


def test_lagging_modality_is_found_and_gains_weight():
    card = _card({})
    present = torch.ones(2, 3, dtype=torch.bool)
    _, _, out = _forward(card, present)
    feats = {m: out.fused_features["a"].detach().clone() for m in NAMES}
    feats["m1"] = torch.randn_like(feats["m1"])  # only m1 is far from the teacher
    out = dataclasses.replace(out, encoder_features=feats)
    loss = PassionLoss(card, preference_rate=0.1).train()
    terms = loss(out, _regions(), present)
    assert terms.lagging == ("m1",)
    assert terms.preference["m1"] > 0 > terms.preference["m0"]
    assert terms.weights == pytest.approx({m: 1.0 for m in NAMES})  # weights used this call
    beta = loss.preference
    assert beta[1] > beta[0] and beta.pow(2).mean().item() == pytest.approx(1.0)
    frozen = loss.preference.clone()
    loss.eval()(out, _regions(), present)
    assert torch.equal(loss.preference, frozen)


def test_rare_modalities_weigh_more():
    card = _card({"m1": 0.5})
    loss = PassionLoss(card)
    w = loss.inverse_frequency
    assert w[1] / w[0] == pytest.approx(2.0) and w[2] == w[0]


def test_passion_needs_modality_heads():
    card = card_from_dict(multimodal_dict(3))
    present = torch.ones(1, 3, dtype=torch.bool)
    out = CIMLNet(card).forward_features(torch.randn(1, 3, *TINY_SHAPE), present)
    with pytest.raises(ValueError, match="modality_heads"):
        PassionLoss(card)(out, _regions(1), present)


def test_a_few_steps_reduce_supervised_plus_passion_loss():
    card = _card()
    present = torch.tensor([[True, False, True], [True, True, True]])
    net, x, _ = _forward(card, present, seed=1)
    y = _regions()
    supervised, passion = CIMLLoss(card), PassionLoss(card)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        out = net.forward_features(x, present)
        total = supervised(out, y).total + passion(out, y, present).total
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert all(np.isfinite(history))
    assert history[-1] < history[0]
