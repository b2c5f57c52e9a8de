"""Per-modality Grad-CAM: every modality at the same layer (the gated skips), equal to Captum's
LayerGradCam there, signed, and free of window seams."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from conftest import multimodal_dict, tiny

from ciml.config import card_from_dict, preset_dict
from ciml.inference.gradcam import modality_shares, region_score, skip_layer, target_cams, target_layer_cams
from ciml.inference.segment import normalised_maps
from ciml.inference.sliding_window import predict_logits, predict_windows, predict_with_cams
from ciml.nn import CIMLNet

CPU = torch.device("cpu")


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


def _captum_score(net, window, i):
    """Captum's score for target i: its logits summed over the voxels predicted as it (fixed)."""
    with torch.no_grad():
        predicted = net(window) > 0

    def score(x):
        return (net(x)[:, i] * predicted[:, i]).flatten(1).sum(dim=1)

    return score


def test_maps_equal_captums_layer_gradcam_at_the_gated_skips(brats_net):
    card, net = brats_net.card, brats_net
    torch.manual_seed(1)
    window = torch.randn(1, 4, 16, 16, 16)
    _, mine = target_layer_cams(net, window, card.inference.threshold)
    for s in card.subtasks:
        for t in s.targets:
            score = _captum_score(net, window, card.target_index(t))
            assert set(mine[t]) == {(m, lv) for m in (s.primary, *s.auxiliaries) for lv in net.gate_levels}, t
            for lv in net.gate_levels:
                # An auxiliary's part is its gate's message: the Weighting module's output.
                messages = {a: LayerGradCam(score, net.gate(s.name, a, lv).message).attribute(
                    window, relu_attributions=False) for a in s.auxiliaries}
                # The decoder's input at lv (primary + messages): LayerGradCam is linear in the
                # activation, so with one gradient the parts' maps add up to it.
                layer, index = skip_layer(net, s.name, lv)
                skip = LayerGradCam(score, layer).attribute(
                    window, relu_attributions=False, attribute_to_layer_input=True)[index]
                tol = {"rtol": 1e-3, "atol": 1e-6 * float(skip.detach().abs().max())}
                for a, theirs in messages.items():
                    assert theirs.abs().max() > 0, (t, a, lv)
                    torch.testing.assert_close(mine[t][(a, lv)], theirs, **tol)
                torch.testing.assert_close(sum(mine[t][(m, lv)] for m in (s.primary, *s.auxiliaries)), skip, **tol)
                # Hence the primary's map is Captum's at the skip minus the messages' maps.
                torch.testing.assert_close(mine[t][(s.primary, lv)], skip - sum(messages.values()), **tol)
                # Captum's ReLU'd map is the displayed (clamped) one.
                relu = LayerGradCam(score, net.gate(s.name, s.auxiliaries[0], lv).message).attribute(
                    window, relu_attributions=True)
                torch.testing.assert_close(mine[t][(s.auxiliaries[0], lv)].clamp_min(0), relu, **tol)


def test_every_modality_is_measured_with_the_same_gradient(brats_net):
    """Moving content from one auxiliary's message to another's leaves the skip, hence the
    gradient, unchanged: doubling a's message and taking the same amount from b's doubles a's
    map, lowers b's by as much, and leaves the primary's and the logits as they were."""
    card, net = brats_net.card, brats_net
    s = card.subtasks[0]
    a, b = s.auxiliaries[:2]
    lv = net.gate_levels[-1]
    torch.manual_seed(5)
    window = torch.randn(1, 4, 16, 16, 16)
    logits, before = target_layer_cams(net, window, card.inference.threshold)
    sent = {}

    def double(module, inputs, output):
        sent["a"] = output
        return 2 * output

    def take(module, inputs, output):
        return output - sent["a"]

    hooks = [net.gate(s.name, a, lv).message.register_forward_hook(double),
             net.gate(s.name, b, lv).message.register_forward_hook(take)]
    try:
        moved_logits, after = target_layer_cams(net, window, card.inference.threshold)
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(moved_logits, logits)
    for t in s.targets:
        scale = 1e-6 * float(before[t][(a, lv)].abs().max())
        torch.testing.assert_close(after[t][(a, lv)], 2 * before[t][(a, lv)], rtol=1e-4, atol=scale)
        torch.testing.assert_close(after[t][(b, lv)], before[t][(b, lv)] - before[t][(a, lv)], rtol=1e-4, atol=scale)
        torch.testing.assert_close(after[t][(s.primary, lv)], before[t][(s.primary, lv)])


def test_window_maps_are_the_layer_maps_upsampled_and_summed_per_modality(brats_net):
    card, net = brats_net.card, brats_net
    torch.manual_seed(4)
    window = torch.randn(1, 4, 16, 16, 16)
    logits, cams = target_cams(net, window, card.inference.threshold)
    layer_logits, layer_maps = target_layer_cams(net, window, card.inference.threshold)
    torch.testing.assert_close(logits, layer_logits)
    torch.testing.assert_close(logits, net(window))
    for t, maps in layer_maps.items():
        assert set(cams[t]) == {m for m, _ in maps}, t
        for m, cam in cams[t].items():
            assert cam.shape == (1, 1, 16, 16, 16), (t, m)
            # Each level divided by the window voxels per level voxel: its sum is kept.
            expected = sum(torch.nn.functional.interpolate(x, size=(16, 16, 16), mode="trilinear")
                           * x[0, 0].numel() / 16 ** 3 for (n, _), x in maps.items() if n == m)
            torch.testing.assert_close(cam, expected)


def test_a_one_window_image_gets_its_windows_maps(brats_net):
    """With one window the volume's channel weights are that window's own, so the blended maps
    are Captum's LayerGradCam at the same layers (the test above)."""
    card, net = brats_net.card, brats_net
    torch.manual_seed(6)
    image = torch.randn(4, 16, 16, 16)
    logits, cams = predict_with_cams(net, image, card, CPU)
    window_logits, window = target_cams(net, image[None], card.inference.threshold)
    torch.testing.assert_close(logits, window_logits[0], rtol=1e-4, atol=1e-4)
    for i, t in enumerate(card.target_names):
        for j, m in enumerate(card.modality_names):
            expected = window[t][m][0, 0] if m in window[t] else torch.zeros(16, 16, 16)
            torch.testing.assert_close(cams[i, j], expected, rtol=1e-4, atol=1e-6 * float(cams[i].abs().max()))


def test_signed_maps_can_be_negative(brats_net):
    card = brats_net.card
    torch.manual_seed(3)
    _, layer_maps = target_layer_cams(brats_net, torch.randn(1, 4, 16, 16, 16), card.inference.threshold)
    assert min(float(cam.min()) for maps in layer_maps.values() for cam in maps.values()) < 0
    _, cams = predict_with_cams(brats_net, torch.randn(4, 30, 24, 20), card, CPU)
    assert cams.min() < 0 < cams.max()


def test_no_gradient_is_kept_for_the_weights(brats_net):
    target_cams(brats_net, torch.randn(1, 4, 16, 16, 16), 0.5)
    predict_with_cams(brats_net, torch.randn(4, 20, 16, 16), brats_net.card, CPU)
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
    logits, cams = predict_with_cams(net, image, card, CPU)
    assert cams[:, card.modality_index(silent)].abs().max() < 1e-6 * cams.abs().max()
    shares = modality_shares(cams, torch.ones(image.shape[1:], dtype=torch.bool), card)
    for t, share in shares.items():
        assert share[silent] < 1e-4, (t, share)
        others = [m for m in card.modality_names if m != silent]
        assert max(share[m] for m in others) > 0.1


def test_shares_are_the_sizes_of_the_signed_masses():
    card = card_from_dict(tiny(preset_dict("brats")))
    cams = torch.zeros(3, 4, 2, 2, 2)
    cams[0, 0, 0] = 1.0   # WT, t1: +4 inside the mask
    cams[0, 1, 0] = -3.0  # WT, t1ce: -12: a negative map counts by its size
    cams[0, 2, 0, 0] = 2.0
    cams[0, 2, 0, 1] = -2.0  # WT, t2: +4 and -4 cancel
    cams[0, 3, 1] = 5.0   # WT, flair: outside the mask
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0] = True
    shares = modality_shares(cams, mask, card)
    assert shares["WT"] == {"t1": 0.25, "t1ce": 0.75, "t2": 0.0, "flair": 0.0}
    assert shares["TC"] == {m: 0.0 for m in card.modality_names}


def test_blended_maps_match_the_segmentation_and_are_normalised(brats_net):
    card = brats_net.card
    torch.manual_seed(3)
    image = torch.randn(4, 30, 24, 20)  # several windows, blended
    logits, cams = predict_with_cams(brats_net, image, card, CPU)
    plain = predict_logits(brats_net, image, card, CPU)
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-4)
    assert cams.shape == (3, 4, 30, 24, 20)
    scaled = normalised_maps(cams.clamp_min(0))  # displayed: clamped at 0
    assert scaled.max() == pytest.approx(1.0) and scaled.min() >= 0
    # every modality reaches WT's decoder (flair primary, all others auxiliary): all have a map
    assert float(cams[card.target_index("WT")].abs().flatten(1).sum(1).min()) > 0


def _pointwise_net(seed: int) -> CIMLNet:
    """A tiny CIML network whose output at a voxel does not depend on the window computing it:
    1x1 convolutions (no zero padding at window edges) and batch norm in eval (no per-window
    statistics), so any seam in its blended maps would come from Grad-CAM alone."""
    card_dict = tiny(preset_dict("brats"), kernel_size=1, norm="batch")
    # tiles of roi_size (no window plan): windows at y = 0 and y = 24
    card_dict["inference"].update(roi_size=[16, 32, 16], overlap=0.25, window_voxels=0)
    torch.manual_seed(seed)
    return CIMLNet(card_from_dict(card_dict)).eval()


def _border_steps(cams: torch.Tensor, borders: tuple[int, ...], inside: range) -> float:
    """Largest jump across a window border, over the largest variation between neighbouring
    planes elsewhere in ``inside``, over every non-zero map. cams: (T, M, X, Y, Z), steps along Y."""
    worst = 0.0
    for cam in cams.flatten(0, 1):
        if cam.abs().max() == 0:
            continue
        step = (cam[:, 1:] - cam[:, :-1]).abs().mean(dim=(0, 2))  # step[y]: planes y -> y + 1
        elsewhere = max(float(step[y]) for y in inside if y not in borders)
        worst = max(worst, max(float(step[y]) for y in borders) / elsewhere)
    return worst


def test_no_step_at_window_borders_where_there_is_no_structure():
    # a seed whose random net responds to the structure in every target (asserted below); with
    # gates at every level most seeds' outputs barely vary over this small image
    net = _pointwise_net(seed=8)
    card = net.card
    generator = torch.Generator().manual_seed(5)
    texture = torch.randn(4, 1, 16, 56, 16, generator=generator)
    image = torch.nn.functional.avg_pool3d(texture, 5, stride=1, padding=2)[:, 0] * 3 + 1
    image[:, 5:11, 4:10, 5:11] += 5.0  # the structure: in the first window only, far from y = 24..32
    with torch.no_grad():  # each target predicted at the structure only
        for decoder in net.decoders.values():
            decoder.head.conv.conv.bias.zero_()
        plain = predict_logits(net, image, card, CPU)
        for s in card.subtasks:
            for j, t in enumerate(s.targets):
                near, far = plain[card.target_index(t), :, :16].max(), plain[card.target_index(t), :, 16:].max()
                assert near > far, t
                net.decoders[s.name].head.conv.conv.bias[j] = -(near + far) / 2
    logits, cams = predict_with_cams(net, image, card, CPU)
    assert (logits > 0).any() and not (logits[:, :, 12:] > 0).any(), "structure far from the borders"
    # Window 1 starts at y = 24 and window 0 ends at y = 31: MONAI's Gaussian weights are clamped
    # at 1e-3 away from a window's centre, so there a window's edge is a hard edge of the blend.
    borders, inside = (23, 31), range(16, 40)
    assert _border_steps(cams, borders, inside) < 1.6

    def per_window(windows: torch.Tensor) -> torch.Tensor:  # each window with its own weights
        _, maps = target_cams(net, windows, card.inference.threshold)
        zero = torch.zeros(windows.shape[0], 1, *windows.shape[2:])
        return torch.cat([maps[t].get(m, zero) for t in card.target_names for m in card.modality_names], dim=1)

    seamed = predict_windows(per_window, image, card, CPU, gradients=True).reshape(cams.shape)
    assert _border_steps(seamed, borders, inside) > 3, "the check sees the seams of per-window weights"


def test_region_score_only_counts_predicted_voxels():
    logits = torch.tensor([[-1.0, 2.0, 3.0]])
    assert float(region_score(logits, 0.5)) == 5.0
    assert float(region_score(logits, 0.99)) == 0.0
