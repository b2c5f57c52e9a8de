"""Model bundles: exact round trip, tamper and mismatch refusal, and `ciml info`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SHAPE, multimodal_dict, tiny

from ciml.bundle import FORMAT_VERSION, METADATA_FILE, WEIGHTS_FILE, read_card, sha256_of
from ciml.bundle.metadata import migrate_1_to_2, stored_card
from ciml.bundle.weights import load_bundle, save_bundle
from ciml.cli.main import main
from ciml.config import card_from_dict, preset_dict
from ciml.config.card import DTCSpec, PassionSpec
from ciml.errors import BundleError, CIMLError
from ciml.nn import build_network
from ciml.resources import builtin_model


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


# --- format versions ---------------------------------------------------------------------------

def _version_1_bundle(folder: Path) -> Path:
    """A format 1 bundle as ciml wrote them: the card of the built-in model as it shipped in
    format 1 (Testing/data/bundle-v1-card.json, flat PASSION and DTC fields), with weights of
    that network."""
    card_v1 = json.loads((Path(__file__).parent / "data" / "bundle-v1-card.json").read_text())
    card = card_from_dict(migrate_1_to_2(card_v1))
    torch.manual_seed(3)
    save_bundle(folder, build_network(card), card)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta.update(format_version=1, card=card_v1)
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def test_a_version_1_bundle_loads_as_its_version_2_copy(tmp_path):
    """A format 1 bundle is read as is (never rewritten); its migrated card is the card a format 2
    bundle of the same weights writes back, with identical logits."""
    builtin = _version_1_bundle(tmp_path / "v1")
    on_disk = (builtin / METADATA_FILE).read_bytes()
    assert json.loads(on_disk)["format_version"] == 1 < FORMAT_VERSION
    old = load_bundle(builtin)
    flat = json.loads(on_disk)["card"]["training"]
    t = old.card.training
    assert (t.passion.enabled, t.passion.temperature, t.passion.distill_weight, t.dtc.level_set_k) == \
        (flat["passion"], flat["passion_temperature"], flat["distill_weight"], flat["level_set_k"])
    copy = save_bundle(tmp_path / "v2", old.network, old.card, old.arch)
    written = json.loads((copy / METADATA_FILE).read_text())
    assert written["format_version"] == FORMAT_VERSION
    assert written["card"] == old.card.to_dict() and "passion" in written["card"]["training"]
    new = load_bundle(copy)
    assert new.card == old.card
    torch.manual_seed(0)
    x = torch.randn(1, len(old.card.modalities), 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(old.network(x), new.network(x))
    assert (builtin / METADATA_FILE).read_bytes() == on_disk


def test_version_1_cards_migrate_their_flat_sections_and_absent_fields():
    flat = preset_dict("shapes")
    flat["training"].update(passion=False, passion_temperature=2.0, distill_weight=0.25, level_set_k=100.0)
    card = card_from_dict(stored_card({"format_version": 1, "card": flat}))
    assert card.training.passion == PassionSpec(enabled=False, temperature=2.0, distill_weight=0.25)
    assert card.training.dtc == DTCSpec(level_set_k=100.0)
    assert card.network.gate_message == "latent" and card.network.gate_levels == (-2, -1)
    assert card.training.output_prior == "none"
    assert "passion_temperature" in flat["training"]  # the stored metadata is left as it was


def test_version_2_cards_take_todays_defaults_for_absent_fields(card, tmp_path):
    path = save_bundle(tmp_path / "b", _trained_like(card), card)
    meta = json.loads((path / METADATA_FILE).read_text())
    del meta["card"]["network"]["gate_message"], meta["card"]["training"]["passion"]
    (path / METADATA_FILE).write_text(json.dumps(meta))
    assert read_card(path) == card  # not the format 1 values ("latent")
    meta["card"]["training"]["distill_weight"] = 0.5  # a flat field is no longer a format 2 field
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="training.distill_weight: unknown field"):
        read_card(path)
