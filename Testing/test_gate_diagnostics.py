"""The information gate measured: its KL, its reparameterised sample, the gate diagnostics and
the collapse detector, and `ciml info --gates` as a user runs it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ciml.config.presets import preset
from ciml.data.synthetic import generate_case, write_case
from ciml.nn import CIMLNet, CrossModalityInformationGate, format_gate_table, gate_diagnostics, gaussian_kl
from ciml.nn.gate_diagnostics import ACTIVE_CHANNEL_KL, COLLAPSED_MESSAGE_RATIO, diagnose_gate
from ciml.resources import builtin_model


def _ciml_command() -> str:
    exe = Path(sys.executable).with_name("ciml")
    return str(exe) if exe.exists() else shutil.which("ciml") or pytest.skip("ciml is not installed")


def _set_constant(conv: torch.nn.Module, bias) -> None:
    """A 1x1 conv whose output is ``bias`` (per output channel) whatever its input."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.as_tensor(bias, dtype=conv.bias.dtype))


def _hand_gate(channels: int, means, log_vars, att_low: float, att_step: float) -> CrossModalityInformationGate:
    """A 3D gate with constant mean and log-variance per channel, and an attention map that is
    sigmoid(att_low) where the primary's channel 0 is 0 and sigmoid(att_low + att_step) where it is 1."""
    gate = CrossModalityInformationGate(3, channels, message="latent")
    _set_constant(gate.mean, means)
    _set_constant(gate.log_var, log_vars)
    first, _, second, _ = gate.attention
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, 0] = 1.0          # hidden 0 = relu(primary channel 0)
        second.weight.zero_()
        second.weight[0, 0] = att_step
        second.bias.fill_(att_low)
    return gate


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 5, 4, 6, 7, generator=g, dtype=torch.float64) * 1.5
    log_var = torch.randn(3, 5, 4, 6, 7, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(dim=1).mean()
    assert float(gaussian_kl(mean, log_var)) == pytest.approx(float(expected), rel=1e-10)
    # ... and at the prior it is zero.
    assert float(gaussian_kl(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))) == 0.0


def test_reparameterised_sample_has_the_posteriors_mean_and_variance():
    torch.manual_seed(0)
    means, log_vars = [0.0, 1.5, -2.0, 0.3], [0.0, -1.0, 1.0, -3.0]
    gate = CrossModalityInformationGate(2, 4, bottleneck=True, attention=False, message="latent")  # message = latent
    _set_constant(gate.mean, means)
    _set_constant(gate.log_var, log_vars)
    gate.train()
    x = torch.randn(2, 4, 200, 200)
    out = gate(x, x)
    latent = out.message.detach().transpose(0, 1).reshape(4, -1).double()
    n = latent.shape[1]
    for c in range(4):
        var = math.exp(log_vars[c])
        assert float(latent[c].mean()) == pytest.approx(means[c], abs=5 * math.sqrt(var / n))
        # The sample variance's standard error is var * sqrt(2 / n).
        assert float(latent[c].var()) == pytest.approx(var, abs=5 * var * math.sqrt(2 / n))
    # Two training passes draw different samples; eval gives the mean exactly.
    assert not torch.equal(gate(x, x).message, out.message)
    gate.eval()
    assert torch.equal(gate(x, x).message, torch.tensor(means).reshape(1, 4, 1, 1).expand(2, 4, 200, 200))


def test_decoded_message_is_the_decoder_applied_to_the_latent():
    """The default gate decodes its latent (a learned 1x1 convolution) before weighting it."""
    torch.manual_seed(0)
    gate = CrossModalityInformationGate(3, 4, attention=False)
    _set_constant(gate.mean, [1.0, -2.0, 0.5, 0.0])
    mixing = torch.tensor([[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        gate.decoder.weight.copy_(mixing.reshape(4, 4, 1, 1, 1))
        gate.decoder.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    x = torch.randn(1, 4, 3, 3, 3)
    message = gate.eval()(x, x).message
    expected = torch.tensor([-2.0, 2.0, 0.0, 9.5]).reshape(1, 4, 1, 1, 1).expand_as(message)
    assert torch.allclose(message, expected)
    # The latent gate has no decoder.
    assert not any("decoder" in n for n, _ in CrossModalityInformationGate(3, 4, message="latent").named_parameters())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("message", ["decoded", "latent"])
@pytest.mark.parametrize("attention", [True, False])
def test_inference_path_computes_the_modules_function(dims, message, attention):
    """Eval runs the gate as channel matrix products (decoder and mean fused): the same message
    and attention as the convolutions applied one after the other, with gradients for Grad-CAM."""
    torch.manual_seed(1)
    gate = CrossModalityInformationGate(dims, 6, attention=attention, message=message).eval()
    shape = (2, 6, 5, 4) if dims == 2 else (2, 6, 5, 4, 3)
    primary, auxiliary = torch.randn(shape), torch.randn(shape).requires_grad_()
    out = gate(primary, auxiliary)
    with torch.no_grad():
        weights = gate.attention(torch.cat([primary, auxiliary], 1)) if attention else torch.ones(1)
        expected = weights * gate.decoder(gate.mean(auxiliary))
    torch.testing.assert_close(out.message, expected.expand_as(out.message), rtol=1e-5, atol=1e-6)
    if attention:
        torch.testing.assert_close(out.attention, weights, rtol=1e-5, atol=1e-6)
    assert float(out.kl) == 0.0
    out.message.sum().backward()
    assert auxiliary.grad is not None and auxiliary.grad.abs().sum() > 0


def test_free_bits_raise_each_channels_kl_to_the_allowance_and_stop_its_gradient():
    means, log_vars = [0.0, 0.5, 0.0, 1.0], [0.0, 0.0, math.log(4.0), -1.0]
    per_channel = [0.5 * (m * m + math.exp(v) - 1.0 - v) for m, v in zip(means, log_vars)]  # 0, .125, .807, .684
    gate = _hand_gate(4, means, log_vars, att_low=0.0, att_step=0.0)
    gate.free_bits = 0.2
    x = torch.randn(2, 4, 4, 4, 4)
    out = gate.train()(x, x)
    assert float(out.kl.detach()) == pytest.approx(sum(per_channel), rel=1e-5)
    assert float(out.kl_term.detach()) == pytest.approx(sum(max(k, 0.2) for k in per_channel), rel=1e-5)
    out.kl_term.backward()
    grad = gate.mean.bias.grad
    # Channels 0 and 1 are under the allowance: no push towards the prior. Channel 3's mean is 1,
    # so d KL / d mean = 1 (channel 2's mean is 0, so its gradient is 0 either way).
    assert grad[0] == 0 and grad[1] == 0 and float(grad[3]) == pytest.approx(1.0, rel=1e-5)
    gate.free_bits = 0.0
    assert float(gate(x, x).kl_term) == pytest.approx(sum(per_channel), rel=1e-5)


def test_diagnostics_of_a_hand_built_gate():
    channels = 4
    means, log_vars = [0.0, 0.5, 0.0, 1.0], [0.0, 0.0, math.log(4.0), -1.0]
    gate = _hand_gate(channels, means, log_vars, att_low=-1.0, att_step=2.0)
    gate.train()  # the diagnostics measure in eval mode and restore the mode
    # Primary: channel 0 is 1 on half the voxels, 0 elsewhere; the other channels are 0.
    primary = torch.zeros(2, channels, 4, 4, 4)
    primary[:, 0, :2] = 1.0
    auxiliary = torch.randn(2, channels, 4, 4, 4)
    d = diagnose_gate(gate, primary, auxiliary, "whole", "t2", 1)
    assert gate.training

    per_channel = [0.5 * (m * m + math.exp(v) - 1.0 - v) for m, v in zip(means, log_vars)]
    # 0, 0.125, (4 - 1 - ln 4) / 2 = 0.8069, (1 + e^-1 - 1 + 1) / 2 = 0.6839
    assert d.kl == pytest.approx(sum(per_channel), rel=1e-6)  # float32 convs
    assert d.active_channels == sum(k > ACTIVE_CHANNEL_KL for k in per_channel) == 3
    assert d.sigma == pytest.approx(sum(math.exp(0.5 * v) for v in log_vars) / channels, rel=1e-6)
    low, high = 1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(-1.0))      # sigmoid(-1), sigmoid(1)
    assert d.attention_mean == pytest.approx((low + high) / 2, rel=1e-6)
    assert d.attention_std == pytest.approx((high - low) / 2, rel=1e-6)
    message_rms = math.sqrt((low ** 2 + high ** 2) / 2 * sum(m * m for m in means) / channels)
    primary_rms = math.sqrt(0.5 / channels)
    assert d.message_ratio == pytest.approx(message_rms / primary_rms, rel=1e-6)
    assert (d.subtask, d.auxiliary, d.level, d.channels, d.collapsed) == ("whole", "t2", 1, 4, False)


def test_collapse_detector_on_a_collapsed_and_a_working_gate():
    primary = torch.randn(1, 8, 4, 4, 4)
    auxiliary = torch.randn(1, 8, 4, 4, 4)
    prior = _hand_gate(8, [0.0] * 8, [0.0] * 8, att_low=0.0, att_step=0.0)   # the prior: mean 0, log_var 0
    d = diagnose_gate(prior, primary, auxiliary)
    assert d.kl == 0.0 and d.active_channels == 0 and d.sigma == 1.0 and d.message_ratio == 0.0
    assert d.collapsed
    working = _hand_gate(8, [0.8] * 8, [-2.0] * 8, att_low=0.0, att_step=0.0)
    d = diagnose_gate(working, primary, auxiliary)
    assert d.active_channels == 8 and d.message_ratio > COLLAPSED_MESSAGE_RATIO and not d.collapsed
    # Active channels alone keep a gate from being called collapsed, and so does a large message.
    quiet = _hand_gate(8, [0.01] * 8, [-2.0] * 8, att_low=0.0, att_step=0.0)
    d = diagnose_gate(quiet, primary, auxiliary)
    assert d.active_channels == 8 and d.message_ratio < COLLAPSED_MESSAGE_RATIO and not d.collapsed
    # Without a bottleneck there is no KL nor sigma; the message ratio decides.
    plain = CrossModalityInformationGate(3, 8, bottleneck=False)
    d = diagnose_gate(plain, primary, auxiliary)
    assert d.kl is None and d.sigma is None and d.active_channels is None
    assert d.collapsed == (d.message_ratio < COLLAPSED_MESSAGE_RATIO)
    assert "-" in format_gate_table([d])


def test_gate_diagnostics_cover_every_gate_of_a_network_and_restore_its_mode():
    torch.manual_seed(0)
    card = preset("shapes")
    network = CIMLNet(card).train()
    windows = torch.randn(2, len(card.modalities), *([16] * card.network.spatial_dims))
    found = gate_diagnostics(network, windows)
    assert network.training
    keys = [(d.subtask, d.auxiliary, d.level) for d in found]
    assert keys == [(s.name, a, lv) for s in card.subtasks for a in s.auxiliaries for lv in network.gate_levels]
    assert all(d.kl is not None and d.kl >= 0 and d.sigma > 0 for d in found)
    # The same numbers as diagnosing each gate on the network's own features.
    features = network.eval().encode(windows)
    s, a, lv = keys[0]
    primary = card.subtasks[0].primary
    assert diagnose_gate(network.gate(s, a, lv), features[primary][lv], features[a][lv]).kl == found[0].kl
    table = format_gate_table(found)
    assert all(a in table for _, a, _ in keys) and f"of {len(found)} gates collapsed" in table


def test_ciml_info_gates_names_the_builtin_models_gates(tmp_path):
    ciml = _ciml_command()
    case = write_case(generate_case("brats", 0, seed=2026, size="small"), tmp_path)
    model = str(builtin_model())
    shown = subprocess.run([ciml, "info", "--gates", "--model", model, "--case", str(case)],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[2:-1]]
    assert len(rows) == 24  # 2 sub-tasks x 3 auxiliaries x 4 levels
    assert {(r[0], r[1], r[2]) for r in rows} == {
        (s, a, lv) for s, auxiliaries in (("whole", ("t1", "t1ce", "t2")), ("core", ("t1", "t2", "flair")))
        for a in auxiliaries for lv in ("0", "1", "2", "3")}
    assert "gates collapsed" in shown.stdout.splitlines()[-1]
    as_json = subprocess.run([ciml, "info", "--gates", "--json", "--model", model, "--case", str(case)],
                             capture_output=True, text=True)
    assert as_json.returncode == 0, as_json.stderr
    gates = json.loads(as_json.stdout)
    assert [(g["subtask"], g["auxiliary"], str(g["level"])) for g in gates] == [tuple(r[:3]) for r in rows]


def test_ciml_info_gates_refuses_a_network_without_gates_and_a_missing_case(tmp_path):
    ciml = _ciml_command()
    bundle = tmp_path / "fusion"
    made = subprocess.run([ciml, "init", "--preset", "shapes", "--arch", "early-fusion", "--out", str(bundle)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    case = write_case(generate_case("shapes", 0, seed=1, size="small"), tmp_path / "data")
    refused = subprocess.run([ciml, "info", "--gates", "--model", str(bundle), "--case", str(case)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "early-fusion" in refused.stderr and "no information gates" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    no_case = subprocess.run([ciml, "info", "--gates", "--model", str(builtin_model())], capture_output=True, text=True)
    assert no_case.returncode == 2 and "--case" in no_case.stderr


def test_beta_warms_up_linearly_and_weights_the_penalised_kl():
    from ciml.config import card_from_dict, preset_dict
    from ciml.losses import CIMLLoss
    from ciml.nn.output import NetOutput
    from ciml.training.objective import Objective

    raw = preset_dict("shapes")
    raw["training"].update(beta=0.01, beta_warmup_steps=100)
    objective = Objective(card_from_dict(raw))
    assert [objective.beta_at(s) for s in (0, 50, 100, 400)] == pytest.approx([0.0, 0.005, 0.01, 0.01])
    raw["training"]["beta_warmup_steps"] = 0
    assert Objective(card_from_dict(raw)).beta_at(0) == 0.01

    loss = CIMLLoss(card_from_dict(raw))
    logits = torch.zeros(1, 1, 4, 4, 4)
    regions = torch.ones(1, 1, 4, 4, 4)
    out = NetOutput(logits=logits, kl=torch.tensor(3.0), kl_term=torch.tensor(5.0))
    # The loss penalises the free-bits KL (kl_term), and logs the true one.
    delta = loss(out, regions, beta=0.1).total - loss(out, regions, beta=0.0).total
    assert float(delta) == pytest.approx(0.5)
    assert float(loss(out, regions).kl) == 3.0


def test_a_bundle_card_without_gate_message_reads_as_the_latent_gate():
    from ciml.bundle.metadata import stored_card
    from ciml.config import card_from_dict, preset_dict

    old = preset_dict("shapes")
    old["network"].pop("gate_message", None)
    assert card_from_dict(stored_card({"card": old})).network.gate_message == "latent"
    assert card_from_dict(old).network.gate_message == "decoded"  # a new card: the default
    new = preset_dict("shapes")
    new["network"]["gate_message"] = "decoded"
    assert card_from_dict(stored_card({"card": new})).network.gate_message == "decoded"


def test_a_card_without_gate_levels_gates_every_level_of_its_own_depth():
    from ciml.bundle.metadata import stored_card
    from ciml.config import card_from_dict, preset_dict

    for features in ([8, 16, 32], [8, 16, 32, 64, 128]):
        card = preset_dict("shapes")
        card["network"].pop("gate_levels", None)
        card["network"]["features"] = features
        assert card_from_dict(card).network.resolved_gate_levels() == tuple(range(len(features)))
        # a bundle written before the field existed was trained with the two deepest levels
        old = card_from_dict(stored_card({"card": card})).network.resolved_gate_levels()
        assert old == (len(features) - 2, len(features) - 1)
