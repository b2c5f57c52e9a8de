"""Every text the plain half shows the user goes through the translation function the glue
passes: the texts of ``job``, ``progress``, ``roles`` and ``training`` are checked with a
pseudo-translation (every letter of a template upper-cased, its placeholders kept, as Slicer's
``tr`` requires), so an English word left in an output is a text that bypassed it. Statically:
each ``_(...)`` holds one string literal (what Slicer's translation tools collect), and the glue
passes ``_`` to every such function it calls."""

import ast
import re
import sys
import types

import pytest

import slicer_lib_helpers
from slicer_lib_helpers import FakeTimer

from ciml.config import card_from_dict, preset_dict
from CIMLSegmentationLib import job, progress, roles, training

LIB = slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib"
TRANSLATED = ("job.py", "progress.py", "roles.py", "training.py")
BRATS = card_from_dict(preset_dict("brats"))
AUTOPET = card_from_dict(preset_dict("autopet"))
# The functions of those files that return texts for the user, as the glue calls them.
USER_TEXTS = {"status_text", "elapsed_text", "outcome_text", "done_line", "end", "modality_label",
              "apply_disabled_reason", "withhold_choices", "train_disabled_reason", "stage_title"}


def pseudo(text):
    """A translation in which the template's own letters are upper case, its placeholders as they are."""
    return re.sub(r"([^{}]+)(?=\{|$)", lambda m: m.group(1).upper(), text) if "{" in text else text.upper()


def untranslated_words(text, *values):
    """The lower-case English left in ``text`` once the ``values`` put into it are taken out."""
    for value in sorted(map(str, values), key=len, reverse=True):
        text = text.replace(value, "")
    return re.findall(r"[a-z]{2,}", text)


def test_the_pseudo_translation_keeps_placeholders():
    assert pseudo("Failed: {error}") == "FAILED: {error}" and pseudo("{stage}: {percent}%") == "{stage}: {percent}%"
    assert untranslated_words("FAILED: disk full", "disk full") == [] and untranslated_words("Done.") == ["one"]


@pytest.mark.parametrize("event", [
    {"event": "done"}, {"event": "error", "message": "disk full"}, {"event": "error"},
    {"event": "progress", "stage": "segmenting", "fraction": 0.46, "eta_s": 12},
    {"event": "progress", "stage": "validation", "fraction": 0.2},
    {"event": "progress", "stage": "sample case", "fraction": 1.0}])
def test_progress_texts(event):
    assert untranslated_words(progress.status_text(event, pseudo), "disk full") == []


def test_an_unknown_stage_is_shown_as_the_worker_names_it():
    text = progress.status_text({"event": "progress", "stage": "sliding_window", "fraction": 0.5}, pseudo)
    assert text == "Sliding window: 50%" and untranslated_words(text, "Sliding window") == []
    assert untranslated_words(progress.elapsed_text(65, pseudo)) == []


def _ended(status, error="", **fields):
    run = training.TrainingJob("/module", "/data", "/models")
    run.status, run.error = status, error
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def test_job_and_training_outcomes():
    model = types.SimpleNamespace(path="/models/brats-sample-finetuned")
    values = ("/models/brats-sample-finetuned", "/runs/run", "disk full", "read-only")
    for run in (_ended("done", model=model), _ended("cancelled"), _ended("failed", "disk full"),
                _ended("cancelled", model=model, kept="/runs/run"),
                _ended("failed", "disk full", kept="/runs/run", kept_problem="read-only")):
        assert untranslated_words(run.outcome_text(pseudo), *values) == [], run.status
        assert untranslated_words(job.BackgroundJob.outcome_text(run, pseudo), *values) == []
    assert untranslated_words(job.done_line([], pseudo)) == [] and untranslated_words(job.done_line(["a"], pseudo)) == []
    assert untranslated_words(training.train_disabled_reason("", pseudo)) == []
    assert untranslated_words(training.train_disabled_reason("/no/such/folder", pseudo), "/no/such/folder") == []


def test_a_finished_run_in_the_panels_words():
    """RunRecord.end passes the translation on to the status line of every end."""
    record, ends = job.RunRecord(), []
    worker = [sys.executable, "-c", "print('{\"event\": \"done\"}')"]

    class Run(job.BackgroundJob):
        def _prepare(self, folder):
            return worker

    run = Run("/module", timer=FakeTimer, on_finished=lambda r: ends.append(record.end(r, ["a note"], False, pseudo)))
    run.start()
    FakeTimer.last.run()
    assert ends[-1].status_line == "DONE. 1 NOTE(S) IN THE LOG."


def test_roles_texts():
    names = BRATS.modality_names + BRATS.target_names + AUTOPET.modality_names + AUTOPET.target_names
    subtasks = [s.name for s in BRATS.subtasks + AUTOPET.subtasks]
    for card in (BRATS, AUTOPET):
        for modality in card.modality_names:
            assert untranslated_words(roles.modality_label(card, modality, pseudo), *names) == []
    unused = card_from_dict(preset_dict("brats"))
    assert untranslated_words(roles.modality_label(unused, "dwi", pseudo), "dwi") == []  # a modality without a role
    reasons = [roles.apply_disabled_reason(False, {}, _=pseudo),
               roles.apply_disabled_reason(True, {"t1": "n1", "t2": None}, _=pseudo),
               roles.apply_disabled_reason(True, {"t1": "n1", "t2": "n1"}, _=pseudo),
               roles.apply_disabled_reason(True, dict.fromkeys(BRATS.modality_names), card=BRATS, _=pseudo),
               roles.apply_disabled_reason(True, {"pet": None, "ct": None}, card=AUTOPET, _=pseudo)]
    assert all(reasons) and [untranslated_words(r, *names, *subtasks) for r in reasons] == [[]] * len(reasons)
    reasons = [reason for _m, reason in roles.withhold_choices(AUTOPET, ["pet"], pseudo)]
    assert reasons and untranslated_words(reasons[0], *names) == []


def _calls(tree, names):
    return [c for c in ast.walk(tree) if isinstance(c, ast.Call)
            and (c.func.id if isinstance(c.func, ast.Name) else getattr(c.func, "attr", "")) in names]


@pytest.mark.parametrize("name", TRANSLATED)
def test_each_translated_text_is_one_literal_that_slicers_tools_collect(name):
    """Slicer's translation tools rewrite ``_("literal")`` into ``translate("<package>.<file>", ...)``,
    the context ``tr`` computes for this file at run time; any other argument is never collected."""
    tree = ast.parse((LIB / name).read_text())
    calls = _calls(tree, {"_"})
    assert calls, f"{name} translates nothing"
    for call in calls:
        assert len(call.args) == 1 and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str), \
            f"{name}:{call.lineno}: _() of {ast.unparse(call.args[0]) if call.args else 'nothing'}"


def test_the_glue_passes_the_translation_function_wherever_it_asks_for_texts():
    for path in sorted((LIB / "slicerglue").glob("*.py")):
        tree = ast.parse(path.read_text())
        for call in _calls(tree, USER_TEXTS - {"end"}) + [c for c in _calls(tree, {"end"})
                                                           if ast.unparse(c.func) == "self.runs.end"]:
            passed = [ast.unparse(a) for a in call.args] + [ast.unparse(k.value) for k in call.keywords]
            assert "_" in passed, f"slicerglue/{path.name}:{call.lineno}: {ast.unparse(call)} is not translated"
