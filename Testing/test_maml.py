"""MAML: per-modality branches, the modality-aware attention, absent modalities, bundles, training."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.bundle.weights import load_bundle, save_bundle
from ciml.config import card_from_dict, preset_dict
from ciml.losses import CIMLLoss
from ciml.nn import ARCHITECTURES, MAMLNet, build_network
from ciml.nn.modality_attention import ModalityAwareAttention


def _batch(card, batch=2, shape=TINY_SHAPE):
    torch.manual_seed(0)
    x = torch.randn(batch, len(card.modalities), *shape)
    y = (torch.rand(batch, len(card.targets), *shape) > 0.7).float()
    return x, y


def _check_forward_backward(card, batch):
    torch.manual_seed(0)
    net = MAMLNet(card).train()
    x, y = _batch(card, batch=batch)
    out = net.forward_features(x)
    terms = CIMLLoss(card)(out, y)
    terms.total.backward()
    shape = (batch, len(card.targets), *TINY_SHAPE)
    assert out.logits.shape == shape
    assert out.kl.shape == () and out.kl.item() == 0.0
    assert set(out.branch_logits) == set(card.modality_names)
    assert all(b.shape == shape for b in out.branch_logits.values())
    assert set(terms.branches) == set(card.modality_names), "the loss deep-supervises every branch"
    assert set(out.encoder_features) == set(card.modality_names)
    assert torch.isfinite(terms.total)
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("n", [2, 3, 4])
def test_forward_backward_for_2_to_4_modalities(n):
    _check_forward_backward(card_from_dict(multimodal_dict(n)), batch=2)


@pytest.mark.parametrize("name", ["brats", "shapes"])
def test_forward_backward_for_presets(name):
    _check_forward_backward(card_from_dict(tiny(preset_dict(name))), batch=1)


def test_attention_weights_are_a_distribution_over_modalities():
    card = card_from_dict(multimodal_dict(3))
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    with torch.no_grad():
        weights = net.forward_attention(x)
    assert len(weights) == len(card.network.features)
    for level, w in enumerate(weights):
        assert w.shape == (2, 3, *(s // 2 ** level for s in TINY_SHAPE))
        assert ((w >= 0) & (w <= 1)).all()
        assert torch.allclose(w.sum(dim=1), torch.ones_like(w[:, 0]), atol=1e-6)
        assert w.std() > 0, "the weights depend on the features"


def test_an_absent_modality_gets_no_weight_and_does_not_reach_the_fusion():
    card = card_from_dict(multimodal_dict(3))
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    present = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # sample 0 lacks m1
    changed = x.clone()
    changed[0, 1] = torch.randn_like(changed[0, 1]) * 3 + 2
    with torch.no_grad():
        weights = net.forward_attention(x, present)
        out, out_changed = net.forward_features(x, present), net.forward_features(changed, present)
    for w in weights:
        assert (w[0, 1] == 0).all()
        assert (w[1, 1] > 0).all()
        assert torch.allclose(w.sum(dim=1), torch.ones_like(w[:, 0]), atol=1e-6)
    assert torch.allclose(out.logits, out_changed.logits, atol=1e-6, rtol=0)
    assert not torch.allclose(out.branch_logits["m1"][0], out_changed.branch_logits["m1"][0])
    assert torch.equal(out.branch_logits["m0"], out_changed.branch_logits["m0"])


def test_a_sample_with_no_modality_present_is_fused_as_if_all_were():
    card = card_from_dict(multimodal_dict(2))
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    with torch.no_grad():
        fused_all = net(x)
        fused_none = net.forward_features(x, torch.zeros(2, 2)).logits
    assert torch.allclose(fused_all, fused_none, atol=1e-6)
    with pytest.raises(ValueError, match="present must have shape"):
        net.forward_features(x, torch.ones(2, 3))


def test_attention_block_alone():
    block = ModalityAwareAttention(2, channels=4, n_modalities=3)
    feats = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    fused, weights = block(feats, torch.tensor([[0, 0, 1], [1, 1, 0]]))
    assert fused.shape == (2, 4, 8, 8) and weights.shape == (2, 3, 8, 8)
    assert torch.allclose(fused[0], feats[2][0]), "one present modality takes all the weight"
    assert (weights[1, 2] == 0).all()


def test_eval_is_deterministic_and_2d_cards_work():
    card = card_from_dict(tiny(multimodal_dict(3), spatial_dims=2) | {
        "inference": {"roi_size": [16, 16]}, "training": {"patch_size": [16, 16]}})
    net = MAMLNet(card)
    x, y = _batch(card, shape=[16, 16])
    out = net.forward_features(x)
    assert out.logits.shape == (2, 2, 16, 16)
    assert all(b.shape == (2, 2, 16, 16) for b in out.branch_logits.values())
    CIMLLoss(card)(out, y).total.backward()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_level_set_head_on_the_fusion_decoder():
    card = card_from_dict(tiny(multimodal_dict(2), level_set_head=True))
    out = MAMLNet(card).forward_features(_batch(card)[0])
    assert out.level_set is not None and out.level_set.shape == out.logits.shape
    assert MAMLNet(card_from_dict(multimodal_dict(2))).forward_features(_batch(card)[0]).level_set is None


def test_build_network_and_bundle_round_trip(tmp_path):
    assert "maml" in ARCHITECTURES
    card = card_from_dict(multimodal_dict(3))
    torch.manual_seed(3)
    net = build_network(card, "maml").eval()
    assert isinstance(net, MAMLNet) and net.options == {}
    save_bundle(tmp_path / "bundle", net, card, arch="maml")
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.arch == "maml" and isinstance(loaded.network, MAMLNet)
    x, _ = _batch(card)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))


def test_training_a_few_steps_lowers_the_loss():
    card = card_from_dict(multimodal_dict(2))
    torch.manual_seed(0)
    net = MAMLNet(card).train()
    x = torch.randn(2, 2, *TINY_SHAPE)
    # The outer target is where m0 is bright, the inner where it is very bright.
    y = torch.stack([x[:, 0] > 0.3, x[:, 0] > 1.0], dim=1).float()
    loss_fn = CIMLLoss(card)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(net.forward_features(x), y).total
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_wrong_channel_count_is_refused():
    card = card_from_dict(multimodal_dict(3))
    with pytest.raises(ValueError, match="expected 3 modality channels"):
        MAMLNet(card)(torch.zeros(1, 2, *TINY_SHAPE))
