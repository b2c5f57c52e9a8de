"""Model bundles: exact round trip, tamper and mismatch refusal, and `ciml info`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.bundle import FORMAT_VERSION, METADATA_FILE, WEIGHTS_FILE, read_card, sha256_of
from ciml.bundle.weights import load_bundle, save_bundle
from ciml.cli.main import main
from ciml.config import card_from_dict, preset_dict
from ciml.errors import BundleError, CIMLError
from ciml.nn import build_network


@pytest.fixture
def card():
    return card_from_dict(tiny(preset_dict("brats")))


def _trained_like(card, arch="ciml"):
    """A network whose weights are not at their initial values (so round trips mean something)."""
    torch.manual_seed(3)
    net = build_network(card, arch)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("arch", ["ciml", "early-fusion"])
def test_round_trip_gives_identical_outputs(card, tmp_path, arch):
    net = _trained_like(card, arch)
    save_bundle(tmp_path / "b", net, card, arch, provenance={"command": "test"}, metrics={"dice": {"WT": 0.5}})
    bundle = load_bundle(tmp_path / "b")
    assert bundle.card == card and bundle.arch == arch
    assert bundle.metadata["provenance"]["command"] == "test"
    x = torch.randn(1, 4, *TINY_SHAPE)
    with torch.no_grad():
        assert torch.equal(net(x), bundle.network(x))
    for k, v in net.state_dict().items():
        assert torch.equal(v, bundle.network.state_dict()[k]), k


def test_one_flipped_byte_is_refused(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        load_bundle(path)


def test_weights_that_do_not_fit_the_card_are_refused(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    other = card_from_dict(tiny(preset_dict("brats"), features=[4, 8, 32]))
    meta = json.loads((path / METADATA_FILE).read_text())
    meta["card"] = other.to_dict()
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="do not fit the network its card describes"):
        load_bundle(path)


def test_a_card_with_another_decomposition_is_refused(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    meta = json.loads((path / METADATA_FILE).read_text())
    meta["card"]["subtasks"][0]["auxiliaries"] = ["t1"]  # fewer gates than the weights hold
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="unexpected gates"):
        load_bundle(path)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format_version=FORMAT_VERSION + 1), "not supported"),
    (lambda m: m.update(format="something-else"), "not a ciml-bundle"),
    (lambda m: m.pop("weights"), "missing field 'weights'"),
    (lambda m: m["card"]["subtasks"][0].update(primary="dwi"), "subtasks[0].primary"),
    (lambda m: m.update(arch="transformer"), "unknown architecture"),
])
def test_bad_metadata_is_refused(card, tmp_path, edit, message):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    meta = json.loads((path / METADATA_FILE).read_text())
    edit(meta)
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert message in str(err.value)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "empty" / METADATA_FILE).write_text("{")
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(tmp_path / "empty")


def test_weights_that_are_not_safetensors_are_refused_without_unpickling(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    torch.save({"x": torch.zeros(1)}, path / WEIGHTS_FILE)  # a pickle, hash updated to match
    meta = json.loads((path / METADATA_FILE).read_text())

    meta["weights"]["sha256"] = sha256_of(path / WEIGHTS_FILE)
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a readable safetensors file"):
        load_bundle(path)


def test_saving_never_overwrites_unless_asked(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    before = (path / WEIGHTS_FILE).read_bytes()
    with pytest.raises(CIMLError, match="already exists"):
        save_bundle(path, build_network(card), card)
    assert (path / WEIGHTS_FILE).read_bytes() == before
    save_bundle(path, build_network(card), card, overwrite=True)
    assert (path / WEIGHTS_FILE).read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "no temporary folders left"


def test_read_card_needs_no_weights(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    (path / WEIGHTS_FILE).unlink()
    assert read_card(path) == card


def test_info_summarises_a_bundle(card, tmp_path, capsys):
    path = save_bundle(tmp_path / "b", _trained_like(card), card, provenance={"steps": 7})
    assert main(["info", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("brats", "flair", "primary t1ce", "label 4", "verified", "steps"):
        assert text in out
    assert main(["info", "--model", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["card"] == card.to_dict()


def test_info_on_a_tampered_bundle_is_one_line_and_exit_2(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    with open(path / WEIGHTS_FILE, "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    run = subprocess.run([sys.executable, "-m", "ciml", "info", "--model", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "SHA-256" in run.stderr


def test_multimodal_bundles_round_trip(tmp_path):
    card = card_from_dict(multimodal_dict(5))
    net = _trained_like(card)
    save_bundle(tmp_path / "b", net, card)
    x = torch.randn(1, 5, *TINY_SHAPE)
    with torch.no_grad():
        assert torch.equal(net(x), load_bundle(tmp_path / "b").network(x))
