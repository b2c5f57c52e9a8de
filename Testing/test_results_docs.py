"""The docs' numbers are the result files' numbers: README.md and docs/BENCHMARKS.md show what
scripts/render_results.py renders from docs/results/, and no other decimal number."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _renderer()


@pytest.mark.parametrize("document", render.DOCUMENTS, ids=lambda p: p.name)
def test_every_result_block_is_the_rendered_one(document):
    text = document.read_text(encoding="utf-8")
    assert render.BLOCK.search(text), f"{document.name} has no result block"
    assert render.render_text(text, render.load_results()) == text, \
        f"{document.name} differs from its rendering: run python scripts/render_results.py"


@pytest.mark.parametrize("document", render.DOCUMENTS, ids=lambda p: p.name)
def test_no_decimal_number_outside_what_the_result_files_give(document):
    assert render.stray_numbers(document.read_text(encoding="utf-8")) == []


def test_every_result_file_says_what_made_it():
    for name, result in render.load_results().items():
        missing = {"kind", "command", "commit", "machine", "date", "results"} - set(result)
        assert not missing, f"{name}.json lacks {sorted(missing)}"


def test_a_changed_result_file_makes_the_document_stale(tmp_path):
    results = render.load_results()
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    changed = json.loads(json.dumps(results))
    changed["study-shapes-1200"]["results"]["methods"]["ciml"]["dice"]["mean"] = 0.5
    assert render.render_text(text, changed) != text


def test_a_number_typed_into_the_prose_is_refused():
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert render.stray_numbers(text + "\nCIML reaches 0.987 here.\n") == ["0.987"]


def test_the_spread_verdict_needs_intervals_that_do_not_touch():
    # MAML's lead once called "beyond the spread": 0.822 ± 0.015 against 0.792 ± 0.015 touch at 0.807.
    assert render.spread({"mean": 0.822, "sd": 0.015}, {"mean": 0.792, "sd": 0.015}) == "within the spread"
    assert render.spread({"mean": 0.848, "sd": 0.001}, {"mean": 0.792, "sd": 0.015}) == "beyond the spread"
