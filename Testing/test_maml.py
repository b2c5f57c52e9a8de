"""MAML as the authors built it: per-modality networks, one attention fusion on their full-resolution
decoder features, absent branches left out, nnU-Net deep supervision of every branch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.bundle.weights import load_bundle, save_bundle
from ciml.config import card_from_dict, preset_dict
from ciml.losses import CIMLLoss
from ciml.nn import ARCHITECTURES, MAMLNet, NetOutput, build_network
from ciml.nn.deep_supervision import deep_supervision_weights, supervised_scale_weights
from ciml.nn.modality_attention import ModalityAwareAttention

# Four levels on a 16^3 patch: decoder scales 16^3, 8^3, 4^3, nnU-Net supervises the first two.
DEEP_FEATURES = [4, 8, 16, 32]


def _card(n_modalities=3, **network):
    return card_from_dict(tiny(multimodal_dict(n_modalities), **network))


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
    n_scales = len(supervised_scale_weights(len(card.network.features)))
    assert out.logits.shape == shape
    assert out.kl.shape == () and out.kl.item() == 0.0
    assert set(out.branch_logits) == set(out.branch_scales) == set(card.modality_names)
    for m, scales in out.branch_scales.items():
        assert scales[0] is out.branch_logits[m]
        assert [s.shape for s in scales] == [
            (batch, len(card.targets), *(n // 2 ** i for n in TINY_SHAPE)) for i in range(n_scales)]
    assert set(terms.branches) == set(card.modality_names), "the loss deep-supervises every branch"
    features = (batch, card.network.features[0], *TINY_SHAPE)
    assert all(f.shape == features for f in out.encoder_features.values())
    assert set(out.decoder_features) == set(out.fused_features) == {s.name for s in card.subtasks}
    assert all(f.shape == features for f in out.decoder_features.values())
    assert torch.isfinite(terms.total)
    for name, p in net.named_parameters():  # DistributedDataParallel needs every one used
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("features", [[4, 8, 16], DEEP_FEATURES])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_forward_backward_for_2_to_4_modalities(n, features):
    _check_forward_backward(_card(n, features=features), batch=2)


@pytest.mark.parametrize("name", ["brats", "shapes"])
def test_forward_backward_for_presets(name):
    _check_forward_backward(card_from_dict(tiny(preset_dict(name))), batch=1)


def test_deep_supervision_weights_are_nnunets():
    # 1/2^i per scale, the lowest-resolution scale 0, normalised to 1 (by hand).
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0])
    assert deep_supervision_weights(4) == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0])
    assert deep_supervision_weights(5) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0])
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == pytest.approx([1, 0])
    # A U-Net with L levels has L - 1 decoder scales; the zero-weight one gets no head.
    assert supervised_scale_weights(6) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])
    assert supervised_scale_weights(3) == pytest.approx([1])
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def test_attention_is_a_sigmoid_per_modality_and_channel():
    card = _card(3)
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    with torch.no_grad():
        weights = net.forward_attention(x)
    assert weights.shape == (2, 3, card.network.features[0], *TINY_SHAPE)
    # A softmax over the modalities would sum to 1 everywhere; independent sigmoids do not.
    assert (weights.sum(dim=1) - 1).abs().mean() > 0.1
    assert weights.std(dim=2).mean() > 0, "one weight per channel, not one per voxel"


def test_attention_block_sums_without_renormalising():
    torch.manual_seed(1)
    block = ModalityAwareAttention(2, channels=4, n_modalities=3).eval()
    feats = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    present = torch.tensor([[0, 0, 1], [1, 1, 0]])
    fused, weights = block(feats, present)
    assert fused.shape == (2, 4, 8, 8) and weights.shape == (2, 3, 4, 8, 8)
    assert (weights[0, :2] == 0).all() and (weights[1, 2] == 0).all()
    expected = sum(weights[:, i] * feats[i] for i in range(3))
    assert torch.allclose(fused, expected, atol=1e-6)
    assert not torch.allclose(fused[0], feats[2][0], atol=1e-3), "a lone modality is not given weight 1"
    changed = [f.clone() for f in feats]
    changed[0][0] += 5
    changed[1][0] -= 5
    assert torch.equal(block(changed, present)[0][0], fused[0])


def _fix_output(module, value):
    return module.register_forward_hook(lambda *_: value)


def test_fusion_sees_only_the_branches_full_resolution_features():
    card = _card(3, features=DEEP_FEATURES)
    net = MAMLNet(card).eval()
    torch.manual_seed(2)
    fixed = {m: torch.randn(2, card.network.features[0], *TINY_SHAPE) for m in card.modality_names}
    hooks = [_fix_output(net.decoders[m].up[-1], fixed[m]) for m in card.modality_names]
    x, _ = _batch(card)
    with torch.no_grad():
        first, second = net(x), net(torch.randn_like(x) * 2)
        expected = net.output(net.fuse(fixed)[0])
    for h in hooks:
        h.remove()
    assert torch.equal(first, second), "nothing but the last decoder features reaches the fusion"
    assert torch.allclose(first, expected, atol=1e-6)


def test_a_deep_encoder_change_reaches_the_fusion_only_through_its_own_branch():
    card = _card(3, features=DEEP_FEATURES)
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    with torch.no_grad():
        before = net.forward_features(x)
        hook = net.encoders["m0"].levels[-1].register_forward_hook(lambda _m, _i, out: out + 1.0)
        after = net.forward_features(x)
        hook.remove()
        fused_again = net.output(net.fuse(after.encoder_features)[0])
    for m in ("m1", "m2"):
        assert torch.equal(before.encoder_features[m], after.encoder_features[m])
        assert all(torch.equal(a, b) for a, b in zip(before.branch_scales[m], after.branch_scales[m]))
    assert not torch.allclose(before.encoder_features["m0"], after.encoder_features["m0"])
    assert not torch.allclose(before.logits, after.logits)
    assert torch.allclose(after.logits, fused_again, atol=1e-6)


def test_an_absent_modalitys_branch_is_left_out_of_the_fusion():
    card = _card(3)
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    present = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # sample 0 lacks m1
    changed = x.clone()
    changed[0, 1] = torch.randn_like(changed[0, 1]) * 3 + 2
    with torch.no_grad():
        weights = net.forward_attention(x, present)
        out, out_changed = net.forward_features(x, present), net.forward_features(changed, present)
        others = dict(out.encoder_features, m1=torch.zeros_like(out.encoder_features["m1"]))
        without_m1 = net.output(net.fuse(others)[0])
    assert (weights[0, 1] == 0).all() and (weights[1, 1] > 0).all()
    assert torch.allclose(out.logits[0], out_changed.logits[0], atol=1e-6, rtol=0)
    assert torch.allclose(out.logits[0], without_m1[0], atol=1e-6), "the fusion of the other branches"
    assert not torch.allclose(out.logits[1], without_m1[1], atol=1e-4), "sample 1 keeps m1"
    assert not torch.allclose(out.branch_logits["m1"][0], out_changed.branch_logits["m1"][0])
    assert torch.equal(out.branch_logits["m0"], out_changed.branch_logits["m0"])


def test_a_sample_with_no_modality_present_is_fused_as_if_all_were():
    card = _card(2)
    net = MAMLNet(card).eval()
    x, _ = _batch(card)
    with torch.no_grad():
        fused_all = net(x)
        fused_none = net.forward_features(x, torch.zeros(2, 2)).logits
    assert torch.allclose(fused_all, fused_none, atol=1e-6)
    with pytest.raises(ValueError, match="present must have shape"):
        net.forward_features(x, torch.ones(2, 3))


def _fake_output(card, logits, scales):
    return NetOutput(logits=logits, kl=logits.new_zeros(()), branch_logits={m: s[0] for m, s in scales.items()},
                     branch_scales=scales)


def test_each_scale_is_scored_against_the_nearest_downsampled_target():
    card = _card(2, features=DEEP_FEATURES)
    _, y = _batch(card)
    confident = 30.0  # logits this large make Dice + BCE ~ 0 on the right target
    low = F.interpolate(y, scale_factor=0.5, mode="nearest")
    pooled = F.max_pool3d(y, 2)
    assert not torch.equal(low, pooled), "the test needs targets where the two differ"
    perfect = [confident * (2 * y - 1), confident * (2 * low - 1)]
    wrong = [perfect[0], confident * (2 * pooled - 1)]
    loss = CIMLLoss(card)
    good = loss(_fake_output(card, perfect[0], {"m0": perfect, "m1": perfect}), y)
    bad = loss(_fake_output(card, perfect[0], {"m0": wrong, "m1": perfect}), y)
    assert good.branches["m0"] < 1e-3 and good.branches["m1"] < 1e-3
    assert bad.branches["m0"] > 0.1


def test_branch_losses_are_nnunet_weighted_and_summed_as_the_authors():
    card = _card(2, features=DEEP_FEATURES)
    net = MAMLNet(card).train()
    x, y = _batch(card)
    present = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # m1 is only supervised on sample 1
    out = net.forward_features(x, present)
    loss = CIMLLoss(card)
    terms = loss(out, y, present)
    w = supervised_scale_weights(len(DEEP_FEATURES))
    assert w == pytest.approx([2 / 3, 1 / 3])
    rows = {"m0": slice(None), "m1": slice(1, 2)}
    by_hand = {}
    for m, r in rows.items():
        s0, s1 = out.branch_scales[m]
        y1 = F.interpolate(y, size=s1.shape[2:], mode="nearest")
        by_hand[m] = w[0] * loss.segmentation(s0[r], y[r]) + w[1] * loss.segmentation(s1[r], y1[r])
        assert torch.allclose(terms.branches[m], by_hand[m])
    fused = torch.stack(list(terms.subtasks.values())).mean()
    lam = card.training.deep_supervision_weight
    assert torch.allclose(terms.total, fused + lam / w[0] * (by_hand["m0"] + by_hand["m1"]))
    assert "m1" not in loss(out, y, torch.tensor([[1.0, 0.0], [1.0, 0.0]])).branches
    with pytest.raises(ValueError, match="deep-supervised scales"):
        loss(_fake_output(card, out.logits, {m: s[:1] for m, s in out.branch_scales.items()}), y)


def test_full_resolution_branches_keep_the_mean_branch_loss():
    # CIML's modality heads: no branch_scales, lambda times the mean of the branch losses.
    card = _card(2)
    torch.manual_seed(4)
    _, y = _batch(card)
    logits = torch.randn_like(y)
    branches = {m: torch.randn_like(y) for m in card.modality_names}
    loss = CIMLLoss(card)
    terms = loss(NetOutput(logits=logits, kl=logits.new_zeros(()), branch_logits=branches), y)
    fused = torch.stack(list(terms.subtasks.values())).mean()
    mean = torch.stack([loss.segmentation(b, y) for b in branches.values()]).mean()
    assert torch.allclose(terms.total, fused + card.training.deep_supervision_weight * mean)


def test_eval_is_deterministic_and_2d_cards_work():
    card = card_from_dict(tiny(multimodal_dict(3), spatial_dims=2, features=DEEP_FEATURES) | {
        "inference": {"roi_size": [16, 16]}, "training": {"patch_size": [16, 16]}})
    net = MAMLNet(card)
    x, y = _batch(card, shape=[16, 16])
    out = net.forward_features(x)
    assert out.logits.shape == (2, 2, 16, 16)
    assert all([s.shape for s in b] == [(2, 2, 16, 16), (2, 2, 8, 8)] for b in out.branch_scales.values())
    assert net.forward_attention(x).shape == (2, 3, 4, 16, 16)
    CIMLLoss(card)(out, y).total.backward()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_level_set_head_on_the_fused_features():
    card = _card(2, level_set_head=True)
    out = MAMLNet(card).forward_features(_batch(card)[0])
    assert out.level_set is not None and out.level_set.shape == out.logits.shape
    assert out.level_set.abs().max() <= 1
    assert MAMLNet(_card(2)).forward_features(_batch(card)[0]).level_set is None


def test_build_network_and_bundle_round_trip(tmp_path):
    assert "maml" in ARCHITECTURES
    card = _card(3, features=DEEP_FEATURES)
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
    card = _card(2)
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
    card = _card(3)
    with pytest.raises(ValueError, match="expected 3 modality channels"):
        MAMLNet(card)(torch.zeros(1, 2, *TINY_SHAPE))
