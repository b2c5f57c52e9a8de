"""Per-modality Grad-CAM: agrees with Captum's LayerGradCam, and an ignored modality gets ~0."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from conftest import multimodal_dict, tiny

from ciml.config import card_from_dict, preset_dict
from ciml.inference.gradcam import region_score, target_cams, target_layer_cams
from ciml.inference.segment import contributions, normalised_maps
from ciml.inference.sliding_window import predict_logits, predict_with_cams
from ciml.nn import CIMLNet


def _network(card_dict, seed=0, bias=2.0) -> CIMLNet:
    torch.manual_seed(seed)
    net = CIMLNet(card_from_dict(card_dict)).eval()
    with torch.no_grad():  # predict a part of every window, so every score has gradients
        for decoder in net.decoders.values():
            decoder.head.conv.conv.bias.fill_(bias)
    return net


@pytest.fixture
def brats_net():
    return _network(tiny(preset_dict("brats")))


def test_maps_equal_captums_layer_gradcam(brats_net):
    card, net = brats_net.card, brats_net
    torch.manual_seed(1)
    window = torch.randn(1, 4, 16, 16, 16)
    _, mine = target_layer_cams(net, window, card.inference.threshold)
    deepest = len(card.network.features) - 1
    with torch.no_grad():
        predicted = net(window) > 0  # the mask the score uses, fixed for Captum's forward
    for s in card.subtasks:
        for t in s.targets:
            i = card.target_index(t)

            def score(x, i=i):
                logits = net(x)[:, i]
                return (logits * predicted[:, i]).flatten(1).sum(dim=1)

            layers = {(s.primary, deepest): net.encoders[s.primary].levels[-1]}
            layers.update({(a, lv): net.gate(s.name, a, lv).message for a in s.auxiliaries for lv in net.gate_levels})
            assert set(mine[t]) == set(layers), t
            for (m, lv), layer in layers.items():
                theirs = LayerGradCam(score, layer).attribute(window, relu_attributions=True)
                ours = mine[t][(m, lv)]
                assert theirs.abs().max() > 0, (t, m, lv)
                torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6 * float(theirs.detach().abs().max()))


def test_window_maps_are_the_layer_maps_upsampled_and_summed_per_modality(brats_net):
    card, net = brats_net.card, brats_net
    torch.manual_seed(4)
    window = torch.randn(1, 4, 16, 16, 16)
    logits, cams = target_cams(net, window, card.inference.threshold)
    layer_logits, layer_maps = target_layer_cams(net, window, card.inference.threshold)
    torch.testing.assert_close(logits, layer_logits)
    for t, maps in layer_maps.items():
        assert set(cams[t]) == {m for m, _ in maps}, t
        for m, cam in cams[t].items():
            assert cam.shape == (1, 1, 16, 16, 16), (t, m)
            expected = sum(torch.nn.functional.interpolate(x, size=(16, 16, 16), mode="trilinear")
                           for (n, _), x in maps.items() if n == m)
            torch.testing.assert_close(cam, expected)


def test_no_gradient_is_kept_for_the_weights(brats_net):
    target_cams(brats_net, torch.randn(1, 4, 16, 16, 16), 0.5)
    assert all(p.grad is None for p in brats_net.parameters())
    assert all(p.requires_grad for p in brats_net.parameters()), "flags restored"


def test_a_closed_gate_gets_a_near_zero_contribution():
    card_dict = tiny(multimodal_dict(3))
    net = _network(card_dict)
    card = net.card
    silent = "m1"  # an auxiliary of both sub-tasks; close all its gates
    with torch.no_grad():
        for gate in [net.gate(s.name, silent, lv) for s in card.subtasks if silent in s.auxiliaries
                     for lv in net.gate_levels]:
            last = gate.attention[-2]
            last.weight.zero_()
            last.bias.fill_(-40.0)
    torch.manual_seed(2)
    image = torch.randn(3, 24, 20, 16)
    logits, cams = predict_with_cams(net, image, card, torch.device("cpu"))
    shares = contributions(cams, torch.sigmoid(logits) > 0.5, card)
    for t, share in shares.items():
        assert share[silent] < 1e-4, (t, share)
        assert sum(share.values()) == pytest.approx(1.0, abs=1e-3)
        others = [m for m in card.modality_names if m != silent]
        assert max(share[m] for m in others) > 0.1


def test_blended_maps_match_the_segmentation_and_are_normalised(brats_net):
    card = brats_net.card
    torch.manual_seed(3)
    image = torch.randn(4, 30, 24, 20)  # several windows, blended
    logits, cams = predict_with_cams(brats_net, image, card, torch.device("cpu"))
    plain = predict_logits(brats_net, image, card, torch.device("cpu"))
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-4)
    assert cams.shape == (3, 4, 30, 24, 20) and (cams >= 0).all()
    scaled = normalised_maps(cams)
    assert scaled.max() == pytest.approx(1.0) and scaled.min() >= 0
    # a modality outside a target's sub-task has no map for it (WT: flair primary, all others auxiliary)
    assert float(cams[card.target_index("WT")].flatten(1).sum(1).min()) > 0


def test_region_score_only_counts_predicted_voxels():
    logits = torch.tensor([[-1.0, 2.0, 3.0]])
    assert float(region_score(logits, 0.5)) == 5.0
    assert float(region_score(logits, 0.99)) == 0.0
