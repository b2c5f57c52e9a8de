"""The networks: shapes, the gates' KL and sampling, where gradients flow, parameter matching."""

from __future__ import annotations

import weakref

import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.config import PRESETS, card_from_dict, preset_dict
from ciml.losses import CIMLLoss
from ciml.nn import CIMLNet, CrossModalityInformationGate, EarlyFusionNet, build_network, gaussian_kl, parameter_count


def _batch(card, batch=2, shape=TINY_SHAPE):
    torch.manual_seed(0)
    x = torch.randn(batch, len(card.modalities), *shape)
    y = (torch.rand(batch, len(card.targets), *shape) > 0.7).float()
    return x, y


def _train_step(net, card, x, y):
    out = net.forward_features(x)
    loss = CIMLLoss(card)(out, y).total
    loss.backward()
    return out, loss


@pytest.mark.parametrize("n", [2, 3, 4, 6])
@pytest.mark.parametrize("arch", ["ciml", "early-fusion"])
def test_forward_backward_for_2_to_6_modalities(n, arch):
    card = card_from_dict(multimodal_dict(n))
    net = build_network(card, arch).train()
    x, y = _batch(card)
    out, loss = _train_step(net, card, x, y)
    assert out.logits.shape == (2, 2, *TINY_SHAPE)
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_forward_backward_for_each_preset(name):
    card = card_from_dict(tiny(preset_dict(name)))
    net = CIMLNet(card).train()
    x, y = _batch(card, batch=1)
    out, loss = _train_step(net, card, x, y)
    assert out.logits.shape == (1, len(card.targets), *TINY_SHAPE)
    # by default every encoder level receives each auxiliary's message
    assert net.gate_levels == tuple(range(len(card.network.features)))
    assert len(out.gates) == sum(len(s.auxiliaries) for s in card.subtasks) * len(net.gate_levels)
    assert out.kl > 0
    assert all(p.grad is not None for p in net.parameters())


def test_two_dimensional_cards_work():
    card = card_from_dict(tiny(multimodal_dict(3), spatial_dims=2) | {
        "inference": {"roi_size": [16, 16]}, "training": {"patch_size": [16, 16]}})
    x, y = _batch(card, shape=[16, 16])
    for arch in ("ciml", "early-fusion"):
        _, loss = _train_step(build_network(card, arch), card, x, y)
        assert torch.isfinite(loss)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zero = torch.zeros(2, 4, 3, 3, 3)
    assert gaussian_kl(zero, zero).item() == 0.0
    torch.manual_seed(1)
    assert gaussian_kl(torch.randn(2, 4, 3, 3, 3), zero) > 0
    assert gaussian_kl(zero, torch.full_like(zero, 0.5)) > 0
    assert gaussian_kl(zero, torch.full_like(zero, -0.5)) > 0


def test_gate_with_zeroed_heads_has_zero_kl():
    gate = CrossModalityInformationGate(3, 4)
    for conv in (gate.mean, gate.log_var):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    out = gate(torch.randn(1, 4, 4, 4, 4), torch.randn(1, 4, 4, 4, 4))
    assert out.kl.item() == 0.0
    assert out.attention.shape == (1, 1, 4, 4, 4)
    assert ((out.attention > 0) & (out.attention < 1)).all()


def test_training_samples_and_eval_is_deterministic():
    card = card_from_dict(multimodal_dict(3))
    net = CIMLNet(card)
    x, _ = _batch(card, batch=1)
    net.train()
    assert not torch.equal(net(x), net(x)), "training must sample the bottleneck"
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x)), "eval must use the bottleneck's mean"
        assert net.forward_features(x).kl.item() == 0.0, "the KL is a training term"


def test_gate_ablation_switches():
    card = card_from_dict(tiny(multimodal_dict(2), gate_bottleneck=False, gate_attention=False))
    net = CIMLNet(card).train()
    out = net.forward_features(_batch(card)[0])
    assert out.kl.item() == 0.0
    assert all(torch.equal(g.attention, torch.ones_like(g.attention)) for g in out.gates.values())
    assert torch.equal(net(_batch(card)[0]), net(_batch(card)[0])), "no bottleneck, no sampling"


def _grad_reaches(net, modality):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoders[modality].parameters())


def test_subtask_loss_reaches_its_auxiliaries_through_the_gates_only():
    card = card_from_dict(tiny({
        "name": "three", "reference": "a",
        "modalities": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "targets": [{"name": "x", "label": 1}, {"name": "y", "label": 2}],
        "subtasks": [{"name": "sx", "targets": ["x"], "primary": "a", "auxiliaries": ["b"]},
                     {"name": "sy", "targets": ["y"], "primary": "c"}],
    }))
    net = CIMLNet(card).train()
    x, y = _batch(card)
    out = net.forward_features(x)
    loss = CIMLLoss(card).dice(out.logits[:, :1], y[:, :1])  # sub-task sx only
    loss.backward()
    assert _grad_reaches(net, "a") and _grad_reaches(net, "b")
    assert not _grad_reaches(net, "c"), "c is used by no part of sub-task sx"
    # b reaches sx only through its gates, so only the levels feeding them get gradients.
    gated = set(net.gate_levels)
    for level, block in enumerate(net.encoders["b"].levels):
        has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
        assert has_grad == (level <= max(gated)), level


def test_the_primary_chooses_which_encoder_feeds_the_decoder():
    base = multimodal_dict(3)
    base["subtasks"] = [{"name": "s", "targets": ["outer", "inner"], "primary": "m0", "auxiliaries": []}]
    swapped = {**base, "subtasks": [{**base["subtasks"][0], "primary": "m2"}]}
    for card_dict, feeding in ((base, "m0"), (swapped, "m2")):
        card = card_from_dict(card_dict)
        net = CIMLNet(card)
        assert set(net.encoders) == {feeding}, "only the primary's encoder exists without auxiliaries"
        x, _ = _batch(card)
        x_changed = x.clone()
        x_changed[:, card.modality_index(feeding)] += 1.0
        other = x.clone()
        other[:, [i for i, m in enumerate(card.modality_names) if m != feeding]] += 1.0
        net.eval()
        with torch.no_grad():
            assert not torch.allclose(net(x), net(x_changed))
            assert torch.equal(net(x), net(other)), "modalities no sub-task uses change nothing"


def test_outputs_follow_the_cards_target_order():
    card_dict = multimodal_dict(3)
    card_dict["subtasks"].reverse()  # sub-task order differs from the target order
    card = card_from_dict(card_dict)
    net = CIMLNet(card).eval()
    x, _ = _batch(card, batch=1)
    with torch.no_grad():
        out = net.forward_features(x)
        feats = net.encode(x)
        direct = {s.name: net.decoders[s.name](
            [f + sum(out.gates[(s.name, a, lv)].message for a in s.auxiliaries) if lv in net.gate_levels else f
             for lv, f in enumerate(feats[s.primary])])[0] for s in card.subtasks}
    assert torch.allclose(out.logits[:, 0], direct["a"][:, 0], atol=1e-5)
    assert torch.allclose(out.logits[:, 1], direct["b"][:, 0], atol=1e-5)


@pytest.mark.parametrize("name", ["brats", "shapes"])
def test_early_fusion_matches_the_parameter_count(name):
    card = card_from_dict(preset_dict(name))
    ciml, early = CIMLNet(card), EarlyFusionNet(card)
    assert abs(parameter_count(early) / parameter_count(ciml) - 1) < 0.05


def test_wrong_channel_count_is_refused():
    card = card_from_dict(multimodal_dict(3))
    with pytest.raises(ValueError, match="expected 3 modality channels"):
        CIMLNet(card)(torch.zeros(1, 2, *TINY_SHAPE))


def test_inference_forward_equals_forward_features_and_frees_the_encoders_features_first():
    """forward gives forward_features' logits bit for bit, but no encoder output is alive when
    the first sub-task's decoder starts (forward_features keeps them all to the end)."""
    card = card_from_dict(tiny(preset_dict("brats"), gate_levels=[0, 1, 2]))
    torch.manual_seed(0)
    net = build_network(card).eval()
    outputs, alive = [], []
    for encoder in net.encoders.values():
        encoder.register_forward_hook(lambda module, args, out: outputs.extend(weakref.ref(f) for f in out))
    net.decoders[card.subtasks[0].name].up[0].register_forward_pre_hook(
        lambda module, args: alive.append(sum(ref() is not None for ref in outputs)))
    x = torch.randn(1, len(card.modalities), *TINY_SHAPE)
    with torch.no_grad():
        lean = net(x)
        outputs.clear()
        full = net.forward_features(x).logits
    assert torch.equal(lean, full)
    assert alive[0] == 0
    assert alive[1] == len(net.encoders) * len(card.network.features)
