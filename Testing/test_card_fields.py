"""The card's fields as declared: every one documented, and every type, range and choice checked
by the one walker, with the field's path in a one-line message."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from ciml.config import ModelCard, card_from_dict, preset_dict
from ciml.config.fields import field_paths
from ciml.errors import CardError

DOC = Path(__file__).resolve().parent.parent / "docs" / "model-card.md"


def _documented() -> set[str]:
    """Dotted paths of the rows of docs/model-card.md: a row's backticked names, under the
    section its heading names (``## `training.passion` `` -> ``training.passion.NAME``)."""
    found, prefix = set(), None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^## (?:`([^`]+)`|Top level)", line)
        if heading:
            prefix = heading.group(1) or ""
        elif line.startswith("## "):
            prefix = None
        elif prefix is not None and line.startswith("| `"):
            first = line.split("|")[1]
            found |= {f"{prefix}.{name}" if prefix else name for name in re.findall(r"`([^`]+)`", first)}
    return found


def test_every_card_field_has_a_row_in_the_model_card_doc():
    missing = [p for p in field_paths(ModelCard) if p not in _documented()]
    assert missing == [], f"docs/model-card.md lacks rows for {missing}"
    assert "training.passion.enabled" in field_paths(ModelCard)  # the walk reaches nested sections


def _leaves(cls: type, prefix: str = ""):
    """(path, annotation, spec) of every scalar field of the card's sections (not list entries)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        path, tp = f"{prefix}.{f.name}" if prefix else f.name, hints[f.name]
        if is_dataclass(tp):
            yield from _leaves(tp, path)
        else:
            yield path, tp, f.metadata.get("spec")


SECTION_LEAVES = [leaf for leaf in _leaves(ModelCard) if "." in leaf[0]]


def _with(path: str, value):
    card = preset_dict("brats")
    *sections, name = path.split(".")
    d = card
    for s in sections:
        d = d.setdefault(s, {})
    d[name] = value
    return card


@pytest.mark.parametrize("path", [p for p, tp, _ in SECTION_LEAVES if tp is bool])
def test_a_string_where_a_boolean_belongs_is_refused_with_the_fields_path(path):
    with pytest.raises(CardError) as err:
        card_from_dict(_with(path, "false"))
    assert str(err.value) == f'model card: {path}: expected true or false, got the string "false"'


@pytest.mark.parametrize("path,low", [(p, s.low) for p, tp, s in SECTION_LEAVES
                                      if s is not None and s.low is not None and tp in (int, float)])
def test_a_number_below_its_range_is_refused(path, low):
    with pytest.raises(CardError, match=re.escape(f"model card: {path}: must ")):
        card_from_dict(_with(path, low - 1))


@pytest.mark.parametrize("path,value", [("network.norm", "group"), ("inference.blend", "mean"),
                                        ("network.gate_message", "raw"), ("training.output_prior", "retina"),
                                        ("network.spatial_dims", 4)])
def test_a_value_outside_the_choices_is_refused(path, value):
    with pytest.raises(CardError, match=re.escape(f"model card: {path}: ") + ".* is not one of"):
        card_from_dict(_with(path, value))


@pytest.mark.parametrize("path,value,problem", [
    ("network.features", "16,32", "expected a list, got the string \"16,32\""),
    ("training.passion", True, "expected an object, got true"),
    ("training.passion.epoch_steps", 2.5, "expected an integer, got 2.5"),
    ("training.dtc.level_set_k", None, "expected a number, got null"),
    ("training.passion.temprature", 4.0, "unknown field"),
    ("training.missing_rates", {"t1": "0.5"}, "expected a number"),
])
def test_wrong_types_in_nested_sections_name_the_field(path, value, problem):
    with pytest.raises(CardError) as err:
        card_from_dict(_with(path, value))
    assert str(err.value).startswith(f"model card: {path}")
    assert problem in str(err.value)


def test_the_passion_and_dtc_sections_take_their_defaults_and_values():
    card = card_from_dict(_with("training.passion", {"enabled": False, "temperature": 2.0}))
    assert card.training.passion.enabled is False and card.training.passion.temperature == 2.0
    assert card.training.passion.distill_weight == 0.5 and card.training.dtc.level_set_k == 1500.0
    assert card_from_dict(card.to_dict()) == card


def test_card_check_of_a_string_boolean_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(_with("network.gate_bottleneck", "false")))
    run = subprocess.run([sys.executable, "-m", "ciml", "card", "--check", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert 'network.gate_bottleneck: expected true or false, got the string "false"' in lines[0]
