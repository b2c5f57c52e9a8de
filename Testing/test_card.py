"""The model card: presets, JSON round trip, and one clear message per invalid field."""

from __future__ import annotations

import json

import pytest

from ciml.cli.main import main
from ciml.config import PRESETS, card_from_dict, load_card, preset, preset_dict
from ciml.errors import CardError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name, tmp_path):
    card = preset(name)
    path = tmp_path / "card.json"
    card.to_json(path)
    assert load_card(path) == card
    assert json.loads(path.read_text())["name"] == name


def test_brats_preset_decomposes_by_modality():
    card = preset("brats")
    assert card.modality_names == ("t1", "t1ce", "t2", "flair")
    by_target = {t: s for s in card.subtasks for t in s.targets}
    assert by_target["WT"].primary == "flair"
    assert by_target["TC"].primary == by_target["ET"].primary == "t1ce"
    assert set(by_target["ET"].auxiliaries) == {"t1", "t2", "flair"}
    assert {t.name: set(t.includes) for t in card.targets} == {"WT": {1, 2, 4}, "TC": {1, 4}, "ET": {4}}


def test_yaml_card_is_read(tmp_path):
    import yaml

    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(preset_dict("autopet")))
    assert load_card(path) == preset("autopet")


def _edit(name, change):
    card = preset_dict(name)
    change(card)
    return card


INVALID = [
    ("unknown auxiliary", lambda c: c["subtasks"][0]["auxiliaries"].append("t3"), "subtasks[0].auxiliaries[3]"),
    ("unknown primary", lambda c: c["subtasks"][1].update(primary="dwi"), "subtasks[1].primary"),
    ("no primary", lambda c: c["subtasks"][0].pop("primary"), "subtasks[0].primary"),
    ("primary as own auxiliary", lambda c: c["subtasks"][0]["auxiliaries"].append("flair"),
     "subtasks[0].auxiliaries[3]"),
    ("duplicate label", lambda c: c["targets"][2].update(label=1, includes=[1]), "targets[2].label"),
    ("duplicate modality", lambda c: c["modalities"].append({"name": "t1"}), "modalities[4]"),
    ("unknown target in sub-task", lambda c: c["subtasks"][0]["targets"].append("NCR"), "subtasks[0].targets[1]"),
    ("target in two sub-tasks", lambda c: c["subtasks"][1]["targets"].append("WT"), "subtasks[1].targets"),
    ("target in no sub-task", lambda c: c["subtasks"][1]["targets"].remove("ET"), "subtasks"),
    ("unknown reference", lambda c: c.update(reference="pet"), "reference"),
    ("unknown kind", lambda c: c["modalities"][0].update(kind="US"), "modalities[0].kind"),
    ("bad name", lambda c: c["modalities"][0].update(name="t 1"), "modalities[0].name"),
    ("typo in a key", lambda c: c["modalities"][0].update(normalisation="zscore"),
     "modalities[0].normalisation"),
    ("label not in includes", lambda c: c["targets"][0].update(includes=[1, 4]), "targets[0].includes"),
    ("colour out of range", lambda c: c["targets"][0].update(color=[2, 0, 0]), "targets[0].color[0]"),
    ("window not divisible", lambda c: c["inference"].update(roi_size=[100, 96, 96]), "inference.roi_size[0]"),
    ("patch of wrong rank", lambda c: c["training"].update(patch_size=[96, 96]), "training.patch_size"),
    ("gate level out of range", lambda c: c.update(network={"gate_levels": [5]}), "network.gate_levels[0]"),
    ("same gate level twice", lambda c: c.update(network={"gate_levels": [3, -1]}), "network.gate_levels"),
    ("one level only", lambda c: c.update(network={"features": [16]}), "network.features"),
    ("negative lr", lambda c: c["training"].update(learning_rate=-1), "training.learning_rate"),
    ("no targets", lambda c: c.update(targets=[]), "targets"),
    ("missing reference", lambda c: c.pop("reference"), "reference"),
]


@pytest.mark.parametrize("why,change,field", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_card_names_the_field(why, change, field):
    with pytest.raises(CardError) as err:
        card_from_dict(_edit("brats", change))
    assert err.value.field == field
    assert str(err.value).startswith(f"model card: {field}: ")


def test_unparseable_card_file_is_one_message(tmp_path, capsys):
    path = tmp_path / "card.json"
    path.write_text("{ not json")
    assert main(["card", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be parsed" in err and str(path) in err and "Traceback" not in err


def test_card_command_writes_a_preset_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "brats.json"
    assert main(["card", "--preset", "brats", "--out", str(out)]) == 0
    assert load_card(out) == preset("brats")
    before = out.read_bytes()
    assert main(["card", "--preset", "shapes", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_window_other_than_the_training_patch_is_noted(capsys):
    assert preset("brats").notes() == []
    card = preset_dict("shapes")
    card["inference"]["roi_size"] = [128, 128, 128]
    assert "differs from training.patch_size" in card_from_dict(card).notes()[0]
