"""PASSION: modality dropping, the distillation terms by hand, the relative preference, the
students of every network and the card fields (the schedule and DDP: test_passion_schedule.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.config import card_from_dict
from ciml.data.missing import apply_presence, presence_frequencies, sample_present
from ciml.errors import CardError, CIMLError
from ciml.losses.passion import (
    PassionLoss,
    binary_kl,
    class_masks,
    inverse_frequency_weights,
    prototype_distillation,
    relative_preference,
)
from ciml.losses.passion_students import StudentPass, single_modality_students
from ciml.nn import build_network
from ciml.nn.output import NetOutput
from ciml.training.objective import Objective

NAMES = ("m0", "m1", "m2")


def _card(n=3, rates=None, **passion):
    card = tiny(multimodal_dict(n), modality_heads=True)
    card["training"].update(missing_rates={"m1": 0.5} if rates is None else rates, passion=passion)
    return card_from_dict(card)


# --- modality dropping -------------------------------------------------------------------

def test_sample_present_respects_the_rates_and_is_deterministic():
    rates = {"m1": 0.5, "m2": 0.8}
    rng = np.random.default_rng(0)
    draws = np.stack([sample_present(rng, NAMES, rates) for _ in range(20000)])
    np.testing.assert_allclose(1 - draws.mean(0), [0.0, 0.5, 0.8], atol=0.02)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        np.testing.assert_array_equal(sample_present(a, NAMES, rates), sample_present(b, NAMES, rates))


def test_sample_present_never_drops_everything_and_keeps_unavailable_modalities_absent():
    rng = np.random.default_rng(1)
    rates = {"m0": 0.9, "m1": 0.9, "m2": 0.9}
    draws = np.stack([sample_present(rng, NAMES, rates) for _ in range(5000)])
    assert draws.any(1).all()
    np.testing.assert_allclose(draws.mean(0), presence_frequencies(NAMES, rates), atol=0.03)
    assert sample_present(rng, NAMES, {"m0": 1.0, "m1": 1.0 - 1e-9, "m2": 1.0}).tolist() == [False, True, False]
    for _ in range(200):
        present = sample_present(rng, NAMES, {"m1": 0.7, "m2": 0.7}, available=np.array([False, True, True]))
        assert not present[0] and present.any()
    with pytest.raises(ValueError, match="unknown"):
        sample_present(rng, NAMES, {"t1": 0.5})


def test_apply_presence_zeroes_exactly_the_absent_channels():
    batch = torch.randn(2, 3, 4, 4, 4)
    present = torch.tensor([[True, False, True], [False, True, True]])
    out = apply_presence(batch, present)
    for b in range(2):
        for m in range(3):
            assert torch.equal(out[b, m], batch[b, m] if present[b, m] else torch.zeros(4, 4, 4))


def test_frequency_weights_are_the_inverse_presence_frequencies():
    np.testing.assert_allclose(inverse_frequency_weights(("a", "b"), {"b": 0.5}), [1.0, 2.0])
    np.testing.assert_allclose(inverse_frequency_weights(("a", "b", "c"), {"b": 0.75, "c": 1.0}), [1.0, 4.0, 0.0])


# --- the distillation terms, by hand -------------------------------------------------------

def test_temperature_kl_by_hand():
    student = torch.tensor([[0.0, 2.0], [-2.0, 4.0]])
    teacher = torch.tensor([[2.0, 2.0], [0.0, -4.0]])
    # Element (0, 0) at T = 2: p_s = sigmoid(0) = 1/2, p_t = sigmoid(1) = 0.731059;
    # KL = p_t ln(2 p_t) + (1 - p_t) ln(2 (1 - p_t)) = 0.277718 - 0.166775 = 0.110944; T^2 KL = 0.443776.
    # Halved: the mean over a sigmoid's two classes.
    expected = torch.tensor([[0.4437763, 0.0], [0.4804580, 6.0927532]]) / 2
    torch.testing.assert_close(binary_kl(student, teacher, 2.0), expected, rtol=1e-5, atol=1e-6)
    at_one = torch.tensor([[0.3278133, 0.0], [0.4337808, 3.8561103]]) / 2
    torch.testing.assert_close(binary_kl(student, teacher, 1.0), at_one, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(binary_kl(student * 1e4, -student * 1e4, 4.0)).all()


def test_kl_is_the_authors_class_mean_on_a_two_class_softmax():
    """The authors' temp_kl_loss (its clamp inactive here) on each target as a softmax over [0, z]:
    torch.mean over classes and voxels."""
    torch.manual_seed(0)
    student, teacher, temperature = 2 * torch.randn(2, 3, 4, 4), 2 * torch.randn(2, 3, 4, 4), 4.0

    def softmax(z):
        return torch.softmax(torch.stack([torch.zeros_like(z), z], dim=1) / temperature, dim=1)

    ps, pt = softmax(student), softmax(teacher)
    authors = temperature ** 2 * pt * (pt.log() - ps.log())
    torch.testing.assert_close(binary_kl(student, teacher, temperature).mean(), authors.mean())


def test_the_pixel_wise_term_averages_over_the_targets():
    """Two identical target channels give the pixel-wise term of one: the mean over targets,
    not their sum."""
    teacher, students, regions, present = _constructed(_card())
    for out in (teacher, *(s.output for s in students.values())):
        out.logits.data[:, 1] = out.logits.data[:, 0]
    terms = PassionLoss(_card(), epoch_steps=10)(teacher, students, regions, present, step=0)
    for m, s in students.items():
        one = binary_kl(s.output.logits[:, :1], teacher.logits[:, :1], 4.0).mean()
        torch.testing.assert_close(terms.distillation[m], one.detach())


def test_prototype_loss_by_hand():
    # Four voxels in a row; the target covers voxels 0 and 1, the background 2 and 3.
    teacher = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]]).reshape(1, 2, 1, 4)
    student = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 1]]).reshape(1, 2, 1, 4)
    masks = class_masks(torch.tensor([1.0, 1, 0, 0]).reshape(1, 1, 1, 4), [0])
    torch.testing.assert_close(masks.flatten(2), torch.tensor([[[0.0, 0, 1, 1], [1, 1, 0, 0]]]))
    # Teacher prototypes (1, 0) and (0, 1): maps [1, 1, 0, 0] (target) and [0, 0, 1, 1].
    # Student target prototype (1/2, 1/2): map [.7071, .7071, .7071, 1]; background prototype
    # (1/2, 1): map [.4472, .8944, .8944, .9487]. Squared differences: target mean .417893,
    # background mean .253445 -> .335669; absolute: .573223 and .374633 -> .473928.
    loss, distance, usable = prototype_distillation([(student, teacher, masks)])
    torch.testing.assert_close(loss, torch.tensor([0.3356690]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(distance, torch.tensor([0.4739279]), rtol=1e-5, atol=1e-6)
    assert usable.tolist() == [True]
    # A class absent from the sample is left out of the mean (not counted as a zero map).
    # Without the target the background is every voxel: teacher prototype (1/2, 1/2), map .7071
    # everywhere; student prototype (1/2, 3/4), map [.5547, .8321, .8321, .9806]; mean squared
    # difference .0323095 (.0161547 if the empty class counted).
    empty = class_masks(torch.zeros(1, 1, 1, 4), [0])
    loss, _, usable = prototype_distillation([(student, teacher, empty)])
    assert usable.tolist() == [True]
    torch.testing.assert_close(loss, torch.tensor([0.0323095]), rtol=1e-4, atol=1e-6)
    assert prototype_distillation([(student, student, masks)])[0].item() < 1e-12


def test_relative_preference_by_hand():
    distance = torch.tensor([[0.1, 0.3, 0.2], [0.4, 0.0, 0.0]])
    counted = torch.tensor([[True, True, True], [True, False, True]])
    # Sample 0: mean .2 -> [-.5, .5, 0]; sample 1: m1 absent, mean .2 -> [1, 0, -1].
    torch.testing.assert_close(relative_preference(distance, counted), torch.tensor([0.5, 0.5, -1.0]))
    assert relative_preference(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool)).abs().sum() == 0


def _constructed(card, noise=(0.0, 0.05, 3.0)):
    """Teacher and students on 2 samples: student m's decoder features are the teacher's plus
    noise of scale noise[m], so m0 equals the teacher and m2 is furthest."""
    torch.manual_seed(0)
    shape, batch = (4, 4, 4), 2
    regions = torch.zeros(batch, 2, *shape)
    regions[:, 0, :2] = 1
    regions[:, 1, :1, :2] = 1
    feats = torch.randn(batch, 3, *shape)
    leaf = lambda t: t.clone().requires_grad_(True)  # noqa: E731
    teacher = NetOutput(logits=leaf(torch.randn(batch, 2, *shape)), kl=torch.zeros(()),
                        decoder_features={"a": leaf(feats)},
                        branch_logits={m: leaf(torch.randn(batch, 2, *shape)) for m in NAMES})
    teacher.decoder_features["b"] = teacher.decoder_features["a"]  # one fused decoder
    rows = torch.ones(batch, dtype=torch.bool)
    students = {}
    for m, scale in zip(NAMES, noise):
        f = leaf(feats + scale * torch.randn_like(feats))
        students[m] = StudentPass(m, rows, NetOutput(logits=leaf(torch.randn(batch, 2, *shape)), kl=torch.zeros(()),
                                                     decoder_features={"a": f, "b": f}))
    return teacher, students, regions, torch.ones(batch, 3, dtype=torch.bool)


def test_a_modality_equal_to_the_teacher_does_not_lag_and_the_task_wise_mask_drops_its_losses():
    card = _card(rates={"m1": 0.5})
    loss = PassionLoss(card, epoch_steps=10)
    teacher, students, regions, present = _constructed(card)
    terms = loss(teacher, students, regions, present, step=0)
    assert terms.preference["m0"] == pytest.approx(-2.0)  # distance 0: -1 in each sample
    assert terms.preference["m1"] < 0 < terms.preference["m2"]
    assert terms.lagging == ("m2",)
    assert terms.prototype["m0"].item() < 1e-10 < terms.prototype["m1"].item()
    w = {"m0": 1.0, "m1": 2.0, "m2": 1.0}  # 1 / presence frequency
    t, p = card.training, card.training.passion
    expected = (p.distill_weight * sum(w[m] * terms.distillation[m] for m in NAMES)
                + p.prototype_weight * w["m2"] * terms.prototype["m2"]
                + t.deep_supervision_weight * w["m2"] * terms.unimodal["m2"])
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    terms.total.backward()
    # Task-wise: m1 has a prototype and a unimodal loss, but does not lag: no gradient from them.
    assert students["m1"].output.decoder_features["a"].grad.abs().sum() == 0
    assert students["m2"].output.decoder_features["a"].grad.abs().sum() > 0
    assert teacher.branch_logits["m1"].grad.abs().sum() == 0
    assert teacher.branch_logits["m2"].grad.abs().sum() > 0
    # Every student learns pixel-wise; the teacher learns nothing from its students.
    assert all(s.output.logits.grad.abs().sum() > 0 for s in students.values())
    assert teacher.logits.grad is None and teacher.decoder_features["a"].grad is None


def test_absent_samples_count_for_nothing():
    card = _card()
    teacher, students, regions, present = _constructed(card)
    present[1, 2] = False
    base = PassionLoss(card, epoch_steps=10)(teacher, students, regions, present, step=0)
    students["m2"].output.logits.data[1] = float("nan")
    students["m2"].output.decoder_features["a"].data[1] = 1e3
    teacher.branch_logits["m2"].data[1] = float("nan")
    again = PassionLoss(card, epoch_steps=10)(teacher, students, regions, present, step=0)
    assert again.total.item() == pytest.approx(base.total.item(), rel=1e-6)


# --- the students of every network ---------------------------------------------------------

@pytest.mark.parametrize("arch", ["ciml", "maml", "early-fusion"])
def test_students_withhold_every_other_modality(arch):
    card = _card()
    torch.manual_seed(0)
    net = build_network(card, arch).eval()
    present = torch.tensor([[1.0, 1, 1], [1, 0, 0]])  # sample 1 has m0 only
    x = apply_presence(torch.randn(2, 3, *TINY_SHAPE), present)
    with torch.no_grad():
        teacher = net.forward_features(x, present)
        students = single_modality_students(net.forward_features, x, present, card.modality_names)
    assert set(students) == set(NAMES) and students["m1"].rows.tolist() == [True, False]
    width = card.network.features[0] if arch != "early-fusion" else net.features[0]
    for name in (s.name for s in card.subtasks):
        assert teacher.decoder_features[name].shape == (2, width, *TINY_SHAPE)
    m0 = students["m0"].output
    assert not torch.allclose(m0.logits[0], teacher.logits[0], atol=1e-4)  # m1, m2 withheld
    torch.testing.assert_close(m0.logits[1], teacher.logits[1], atol=1e-5, rtol=1e-5)  # nothing withheld
    for name in teacher.decoder_features:
        torch.testing.assert_close(m0.decoder_features[name][1], teacher.decoder_features[name][1],
                                   atol=1e-5, rtol=1e-5)
    if arch == "early-fusion":
        torch.testing.assert_close(teacher.logits, net(x))


@pytest.mark.parametrize("arch", ["ciml", "maml", "early-fusion"])
def test_the_objective_trains_the_students_and_keeps_its_schedule(arch):
    card = _card(epoch_steps=1)
    torch.manual_seed(0)
    net = build_network(card, arch).train()
    present = torch.tensor([[1.0, 1, 1], [1, 0, 1]])
    x = apply_presence(torch.randn(2, 3, *TINY_SHAPE), present)
    y = torch.zeros(2, 2, *TINY_SHAPE)
    y[:, 0, 3:12, 4:13, 2:11], y[:, 1, 5:9, 6:10, 4:8] = 1, 1
    objective = Objective(card)
    with pytest.raises(CIMLError, match="once per modality"):
        objective(net.forward_features(x, present), y, present, 2, step=0)
    total, logs = objective(net.forward_features(x, present), y, present, 2, step=0,
                            images=x, forward=net.forward_features)
    assert torch.isfinite(total) and {"passion", "passion_distill", "passion_prototype"} <= set(logs)
    total.backward()
    assert sum(p.grad.abs().sum() for p in net.parameters() if p.grad is not None) > 0
    state = objective.state_dict()
    assert not torch.equal(state["passion"]["schedule.beta"], torch.ones(3))  # epoch 0 ended
    again = Objective(card)
    again.load_state_dict(state)
    torch.testing.assert_close(again.passion.schedule.beta, objective.passion.schedule.beta)


# --- card fields -------------------------------------------------------------------------------

def test_passion_card_fields_are_validated():
    p = _card().training.passion
    assert (p.temperature, p.epoch_steps, p.warmup_epochs, p.preference_rate) == \
        (4.0, None, 0, 0.01)
    assert _card(epoch_steps=5, warmup_epochs=2).training.passion.epoch_steps == 5
    for field, value in (("epoch_steps", 0), ("warmup_epochs", -1), ("temperature", 0.0),
                         ("preference_rate", -0.1), ("enabled", "false")):
        with pytest.raises(CardError, match=f"training.passion.{field}: "):
            _card(**{field: value})
    with pytest.raises(ValueError, match="steps per epoch"):
        Objective(_card())


def test_a_modality_present_half_as_often_weighs_as_much_in_expectation():
    """Through the loss: with m1 missing at rate 0.5, the pixel-wise term averaged over the four
    equally likely presence patterns of m1 in a batch of 2 equals the term with m1 always there
    (absent samples count for nothing, and m1's weight doubles)."""
    def distillation_only(rates):
        card = _card(rates=rates, prototype_weight=0.0)
        card = dataclasses.replace(card, training=dataclasses.replace(card.training, deep_supervision_weight=0.0))
        return PassionLoss(card, epoch_steps=10).eval()  # eval: the schedule stays put

    teacher, students, regions, present = _constructed(_card())
    always = distillation_only({})(teacher, students, regions, present, step=0).total
    halved = distillation_only({"m1": 0.5})
    patterns = []
    for pattern in ([True, True], [True, False], [False, True], [False, False]):
        present[:, 1] = torch.tensor(pattern)
        patterns.append(halved(teacher, students, regions, present, step=0).total)
    assert torch.stack(patterns).mean().item() == pytest.approx(always.item(), rel=1e-6)
    assert patterns[0].item() > always.item()  # present in every sample, it weighs twice


def test_passion_false_keeps_the_modality_dropout_without_passions_terms(tiny_preset):
    card = tiny_preset("brats")
    rates = {"t1": 0.3, "t2": 0.3}
    with_passion = dataclasses.replace(card, training=dataclasses.replace(card.training, missing_rates=rates))
    control = dataclasses.replace(card, training=dataclasses.replace(
        card.training, missing_rates=rates, passion=dataclasses.replace(card.training.passion, enabled=False)))
    assert Objective(with_passion, epoch_steps=1).passion is not None
    assert Objective(control, epoch_steps=1).passion is None  # the supervised loss only
    assert card_from_dict(control.to_dict()).training.passion.enabled is False
