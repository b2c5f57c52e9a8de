"""The Slicer side of leaving modalities out and seeing what each one does: modality selectors
that may be "none", the job's reference when the card's reference is left out, the worker's
command for a subset of the modalities, effect and Grad-CAM map files, and the relations table
with absent modalities and what segmenting without each modality changes, read from real reports
of `ciml segment` with the built-in model; the panel picture is filled from such a report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)

from ciml.config import preset, preset_dict
from ciml.config.validate import card_from_dict
from ciml.data.synthetic import case_ids, write_cases
from ciml.resources import builtin_model
from CIMLSegmentationLib import naming, process, report, roles
from CIMLSegmentationLib.models import read_model

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "CIMLSegmentation"
RENDER = ROOT / "scripts" / "render_module_panel.py"
PANEL_REPORT = ROOT / "docs" / "images" / "module-panel-report.json"
BRATS = preset("brats")
AUTOPET = preset("autopet")
MODALITIES = ["t1", "t1ce", "t2", "flair"]
PANEL_SEED = 2026  # the sample case of the panel picture (ciml sample-data --seed 2026)
if str(RENDER.parent) not in sys.path:  # the render script, imported by its test
    sys.path.insert(0, str(RENDER.parent))


def _disjoint_card():
    """A BraTS card whose sub-tasks share no modality: whole reads flair and t2, core t1ce and t1."""
    data = preset_dict("brats")
    data["subtasks"] = [{"name": "whole", "primary": "flair", "auxiliaries": ["t2"], "targets": ["WT"]},
                        {"name": "core", "primary": "t1ce", "auxiliaries": ["t1"], "targets": ["TC", "ET"]}]
    return card_from_dict(data)


# --- real runs of the worker, as the segmentation job starts it ---------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The built-in model on the panel's sample case (seed 2026): once with every modality, once
    without t1ce (the card's reference), each started with the command the job builds."""
    root = tmp_path_factory.mktemp("effects")
    write_cases("brats", 1, root / "case", seed=PANEL_SEED)
    case = root / "case" / case_ids("brats", 1)[0]
    files = {m: str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES}
    model = read_model(builtin_model())
    done = {}
    for name, volumes in (("all", files), ("without t1ce", dict(files, t1ce=None))):
        given = roles.given_inputs(model.card, volumes)
        out = root / name.replace(" ", "-")
        args = process.segment_command(sys.executable, str(model.path), given, str(out), "cpu", fmt="nii.gz",
                                       maps=process.maps_option(True, False))
        run = subprocess.run(args, env=process.worker_environment(str(MODULE_DIR)), capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr
        done[name] = (model, given, out, report.read_report(str(out)))
    return done


# --- the Apply rule ------------------------------------------------------------------------------

def test_apply_allows_none_while_every_subtask_keeps_an_input():
    all_four = {"t1": "n1", "t1ce": "n2", "t2": "n3", "flair": "n4"}
    assert roles.apply_disabled_reason(True, all_four, card=BRATS) == ""
    for left_out in MODALITIES:  # every BraTS sub-task reads all four: any one may be none
        assert roles.apply_disabled_reason(True, dict(all_four, **{left_out: None}), card=BRATS) == ""
    assert roles.apply_disabled_reason(True, {"t1": None, "t1ce": "", "t2": None, "flair": "n4"}, card=BRATS) == ""
    assert roles.apply_disabled_reason(True, dict.fromkeys(MODALITIES), card=BRATS) == (
        "Sub-task whole (WT) has no input: select a volume for at least one of flair, t1, t1ce, t2.")
    assert roles.apply_disabled_reason(True, {"pet": "n1", "ct": None}, card=AUTOPET) == ""
    assert roles.apply_disabled_reason(True, {"pet": None, "ct": None}, card=AUTOPET).startswith(
        "Sub-task lesion (lesion) has no input")
    # an empty selector is not a duplicate; the same volume twice still is
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t1ce": "n1", "t2": None, "flair": None}, card=BRATS) == \
        "The same volume is selected for t1 and t1ce."
    assert roles.apply_disabled_reason(False, all_four, card=BRATS) == "Choose a model first."
    # without a card (the earlier call), every modality still needs a volume
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t2": None}) == "Select a volume for: t2."


def test_apply_names_the_subtask_left_without_input():
    card = _disjoint_card()
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t1ce": None, "t2": "n3", "flair": None}, card=card) == ""
    assert roles.apply_disabled_reason(True, {"t1": None, "t1ce": None, "t2": "n3", "flair": "n4"}, card=card) == (
        "Sub-task core (TC, ET) has no input: select a volume for at least one of t1ce, t1.")
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t1ce": "n2", "t2": None, "flair": ""}, card=card) == (
        "Sub-task whole (WT) has no input: select a volume for at least one of flair, t2.")
    assert [row[0] for row in roles.uncovered_subtasks(card, [])] == ["whole", "core"]


def test_segment_again_without_offers_only_what_leaves_every_subtask_an_input():
    card = _disjoint_card()
    assert roles.withhold_choices(card, ["t1", "t1ce", "t2", "flair"]) == [
        ("t1", ""), ("t1ce", ""), ("t2", ""), ("flair", "")]
    assert roles.withhold_choices(card, ["t1ce", "flair", "t2"]) == [
        ("t1ce", "the only input left for TC, ET"), ("t2", ""), ("flair", "")]
    assert roles.withhold_choices(AUTOPET, ["pet"]) == [("pet", "the only input left for lesion")]
    assert roles.withhold_choices(BRATS, ["flair", "t1"]) == [("t1", ""), ("flair", "")]  # card order


def test_a_deliberate_none_is_not_guessed_again():
    assigned = {"t1": "n1", "t1ce": None, "t2": None, "flair": "n4"}
    assert roles.inputs_to_guess(assigned, []) == ["t1ce", "t2"]
    assert roles.inputs_to_guess(assigned, ["t2"]) == ["t1ce"]
    assert naming.declined_inputs(naming.declined_value(["t2", "flair", "t2"])) == ["flair", "t2"]
    assert naming.declined_inputs(None) == [] and naming.declined_value([]) == ""
    assert naming.DECLINED_INPUTS_ATTRIBUTE.startswith("CIMLSegmentation.")


# --- the reference and the worker's command --------------------------------------------------------

def test_the_reference_is_the_cards_or_the_first_given_in_card_order():
    assert roles.reference_modality(BRATS, MODALITIES) == "t1ce"
    assert roles.reference_modality(BRATS, ["flair", "t2", "t1"]) == "t1"
    assert roles.reference_modality(BRATS, ["flair", "t2"]) == "t2"
    assert roles.reference_modality(BRATS, []) is None
    assert roles.reference_modality(AUTOPET, ["pet"]) == "pet"
    volumes = {"flair": "v4", "t1ce": None, "t1": "v1", "t2": None}
    assert list(roles.given_inputs(BRATS, volumes).items()) == [("t1", "v1"), ("flair", "v4")]


def test_the_worker_chooses_the_same_reference(runs):
    for model, given, out, written in runs.values():
        assert written["reference"] == roles.reference_modality(model.card, list(given))
    assert runs["without t1ce"][3]["reference"] == "t1"


def test_segment_command_for_a_subset():
    args = process.segment_command("py", "/m/brats", {"t1": "/t/t1.nrrd", "flair": "/t/flair.nrrd"}, "/t/out",
                                   device="cuda", maps=process.maps_option(True, False))
    assert args == ["py", "-m", "ciml", "segment", "--model", "/m/brats", "--input", "t1=/t/t1.nrrd",
                    "--input", "flair=/t/flair.nrrd", "--out", "/t/out", "--device", "cuda",
                    "--format", "nrrd", "--progress", "json", "--maps", "effects"]
    assert [process.maps_option(e, g) for e, g in ((True, False), (True, True), (False, True), (False, False))] == \
        ["effects", "all", "gradcam", "none"]
    assert "--no-cam" not in args and "--no-cam" in process.segment_command("py", "/m", {}, "/o", heat_maps=False)


def test_the_worker_takes_the_subset_and_lists_the_absent(runs):
    model, given, out, written = runs["without t1ce"]
    assert list(given) == ["t1", "t2", "flair"] and sorted(written["inputs"]) == sorted(given)
    assert written["absent"] == ["t1ce"] and written["contributions_from"] == "effects"
    assert any("t1ce" in w for w in report.report_warnings(written))  # the model was not trained without it
    assert sorted(report.heat_map_files(str(out), model.modalities, model.targets)) == [
        "effect flair", "effect t1", "effect t2"]


# --- map files ------------------------------------------------------------------------------------

def test_heat_map_files_learn_the_effect_maps(tmp_path):
    names = ["cam_flair.nrrd", "effect_WT_t1_pre.nrrd", "cam_WT_flair.nrrd", "effect_t1_pre.nii.gz",
             "effect_flair.nrrd", "cam_t1_pre.nii.gz", "segmentation.nrrd", "report.json", "effect_ET_flair.nrrd"]
    for name in names:
        (tmp_path / name).write_text("")
    files = report.heat_map_files(str(tmp_path), ["t1_pre", "flair"], ["WT", "ET"])
    # effect maps first, in the card's modality order, then the per-target ones; Grad-CAM keeps its keys
    assert list(files) == ["effect t1_pre", "effect flair", "effect WT/t1_pre", "effect ET/flair",
                           "t1_pre", "flair", "WT/flair"]
    assert files["effect WT/t1_pre"] == str(tmp_path / "effect_WT_t1_pre.nrrd")
    assert files["flair"] == str(tmp_path / "cam_flair.nrrd")
    assert [report.map_title(k) for k in ("effect flair", "effect WT/flair", "flair", "WT/flair")] == [
        "effect flair", "effect WT/flair", "Grad-CAM flair", "Grad-CAM WT/flair"]
    assert report.is_effect_map("effect flair") and not report.is_effect_map("flair")
    assert report.map_keys(names, ["t1_pre", "flair"], ["WT", "ET"]) == {k: os.path.basename(p)
                                                                         for k, p in files.items()}


def test_the_first_map_shown_is_the_most_influential_modalitys():
    rows = [("WT", [0.1, report.ABSENT, None, 0.7], 3.0)]
    keys = ["effect t1", "effect flair", "t1", "flair"]
    assert report.first_map(keys, rows, MODALITIES) == "effect flair"
    assert report.first_map(["t1", "flair"], rows, MODALITIES) == "flair"  # Grad-CAM only
    assert report.first_map(["effect t2"], rows, MODALITIES) == "effect t2"
    assert report.first_map([], rows, MODALITIES) == ""


def test_effect_maps_hide_their_faint_middle():
    hidden = naming.transparent_entries(256)
    assert hidden == list(range(122, 134))  # |value| < 0.05 over -1..1
    assert naming.transparent_entries(256, floor=0.0) == []
    assert naming.EFFECT_WINDOW == (-1.0, 1.0) and 0 < naming.EFFECT_FLOOR < 0.1
    assert naming.segmentation_name("BraTS_t1", "brats-sample", ["flair"]) == \
        "BraTS_t1 brats-sample segmentation without flair"
    assert naming.segmentation_name("BraTS_t1ce", "brats-sample") == "BraTS_t1ce brats-sample segmentation"


# --- the relations table from real reports --------------------------------------------------------

def test_relations_rows_with_every_modality(runs):
    model, _, _, written = runs["all"]
    rows = report.relations_rows(written, model.modalities)
    details = report.effect_details(written, model.modalities)
    assert [r[0] for r in rows] == model.targets
    for target, shares, volume in rows:
        entry = written["targets"][target]
        assert shares == [entry["contributions"][m] for m in model.modalities]
        assert abs(sum(shares) - 1.0) < 1e-3 or sum(shares) == 0
        assert volume == entry["volume_ml"]
        for modality, detail in zip(model.modalities, details[target]):
            effect = entry["effects"][modality]
            assert detail == {"volume_change_ml": effect["volume_change_ml"], "dice_without": effect["dice_without"]}


def test_relations_rows_show_absent_modalities_and_what_each_one_changes(runs):
    model, _, _, written = runs["without t1ce"]
    rows = report.relations_rows(written, model.modalities)
    assert rows == report.relations_rows(written, model.modalities, ["t1ce"])  # the report's list by default
    details = report.effect_details(written, model.modalities)
    for target, shares, volume in rows:
        assert shares[1] == report.ABSENT and details[target][1] == report.ABSENT
        entry = written["targets"][target]
        present = [m for m in model.modalities if m != "t1ce"]
        assert [s for s in shares if s != report.ABSENT] == [entry["contributions"][m] for m in present]
        text, tip = report.relation_cell(target, "t1ce", shares[1], details[target][1])
        assert text == "absent" and "not given" in tip
        for modality, share, detail in zip(model.modalities, shares, details[target]):
            if detail == report.ABSENT:
                continue
            effect = entry["effects"][modality]
            text, tip = report.relation_cell(target, modality, share, detail)
            assert text.splitlines()[0] == report.format_share(share)
            if effect["volume_change_ml"] == 0 and effect["dice_without"] == 1:
                assert text.splitlines()[1:] == ["no change"]
            else:
                assert text.splitlines()[1:] == [f"{effect['volume_change_ml'] + 0.0:+.1f} ml",
                                                 f"Dice {effect['dice_without']:.2f}"]
            assert f"{effect['dice_without']:.2f}" in tip and modality in tip
    assert report.format_share(report.ABSENT) == "absent"


def test_the_relations_table_is_its_rows_cells_in_the_panels_columns(runs):
    """report.relations_table, which Slicer's panel and the panel picture both fill their table
    from: a header, then per target its name, one centred relation_cell per modality, its volume."""
    model, _, _, written = runs["without t1ce"]
    table = report.relations_table(written, model.modalities, target_header="Ziel", volume_header="ml")
    assert table.header == ["Ziel", "t1", "t1ce", "t2", "flair", "ml"]
    assert table.rows == report.relations_rows(written, model.modalities)
    details = report.effect_details(written, model.modalities)
    assert [row[0].text for row in table.cells] == model.targets
    for row, (target, shares, volume) in zip(table.cells, table.rows):
        assert len(row) == len(table.header) and row[-1] == report.TableCell(f"{volume:.1f}")
        assert not row[0].centred and not row[-1].centred and all(cell.centred for cell in row[1:-1])
        for cell, modality, share, detail in zip(row[1:-1], model.modalities, shares, details[target]):
            assert (cell.text, cell.tooltip) == report.relation_cell(target, modality, share, detail, "effects")
        assert row[2].text == "absent"
    assert report.relations_table(written, model.modalities).header[0] == "Target"


def test_a_cell_without_effects_shows_the_share_only():
    assert report.relation_cell("WT", "flair", 0.25, None, "gradcam") == (
        "25%", "flair for WT: 25% of the first-order (Grad-CAM) estimates of withholding each modality, "
        "summed over the body.")
    text, tip = report.relation_cell("WT", "flair", 0.98, {"volume_change_ml": -2.0, "dice_without": 0.5})
    assert text == "98%\n-2.0 ml\nDice 0.50" and "shrinks by 2.0 ml" in tip
    assert report.relation_cell("WT", "t2", None, None) == ("", "")


# --- the panel picture ----------------------------------------------------------------------------

def test_the_panel_pictures_report_is_a_real_run_of_the_builtin_model(runs):
    """docs/images/module-panel-report.json is what `ciml segment` writes for the built-in model on
    the sample case of seed 2026 (timings aside): the picture's numbers are not invented."""
    kept = json.loads(PANEL_REPORT.read_text(encoding="utf-8"))
    fresh = runs["all"][3]
    metadata = json.loads((builtin_model() / "metadata.json").read_text(encoding="utf-8"))
    assert kept["model"]["name"] == "brats-sample" and kept["model"]["sha256"] == metadata["weights"]["sha256"]
    assert kept["absent"] == fresh["absent"] == [] and list(kept["targets"]) == list(fresh["targets"])
    for target, entry in kept["targets"].items():  # deterministic on the CPU; a voxel's leeway elsewhere
        again = fresh["targets"][target]
        assert abs(entry["volume_ml"] - again["volume_ml"]) < 0.1, target
        for modality, effect in entry["effects"].items():
            assert abs(effect["share"] - again["effects"][modality]["share"]) < 0.01, (target, modality)
            assert abs(effect["volume_change_ml"] - again["effects"][modality]["volume_change_ml"]) < 0.1
            assert abs(effect["dice_without"] - again["effects"][modality]["dice_without"]) < 0.01


def test_the_render_script_reads_a_report(runs, tmp_path):
    # PySide6 and the system libraries Qt needs come with scripts/setup.sh --test: a missing one fails
    import render_module_panel  # the render script imports PySide6 at its top
    _, _, out, written = runs["without t1ce"]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    png = tmp_path / "panel.png"
    done = subprocess.run([sys.executable, str(RENDER), "--out", str(png), "--report", str(out / "report.json")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    refused = subprocess.run([sys.executable, str(RENDER), "--out", str(tmp_path / "x.png"),
                              "--report", str(tmp_path / "other.json")], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "not a report.json" in refused.stderr
    lines = render_module_panel.log_lines(written)  # the Log box: the worker's summary, from the report
    for target, entry in written["targets"].items():
        assert any(line.startswith(f"  {target}: {entry['volume_ml']:.1f} ml") for line in lines)
    assert lines[-1].startswith("Done.")
