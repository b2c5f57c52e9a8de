"""The plain functions of CIMLSegmentationLib (models, roles, progress, report, geometry,
requirements), tested outside Slicer with real bundle folders made by ``ciml init`` and the
cards as ``ciml.config.ModelCard``."""

import json
import subprocess
import sys

import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)

from ciml.choices import DEVICES
from ciml.config import preset
from CIMLSegmentationLib import geometry, models, process, progress, report, requirements, roles

BRATS = preset("brats")
AUTOPET = preset("autopet")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models folder with a real untrained bundle, a foreign JSON and a broken one."""
    folder = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, "-m", "ciml", "init", "--preset", "brats", "--out", str(folder / "brats")],
                   check=True, capture_output=True)
    (folder / "other").mkdir()
    (folder / "other" / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    (folder / "broken").mkdir()
    (folder / "broken" / "metadata.json").write_text("{not json")
    (folder / "empty").mkdir()
    return folder


# --- models ---------------------------------------------------------------------------------

def test_find_models_reads_real_bundles_and_reports_bad_folders(models_dir, tmp_path):
    found, problems = models.find_models([models_dir / "brats", tmp_path / "missing"], models_dir)
    assert [(m.name, m.origin) for m in found] == [("brats", "built-in")]  # listed once, as built-in
    brats = found[0]
    assert brats.modalities == ["t1", "t1ce", "t2", "flair"] and brats.reference == "t1ce"
    assert brats.targets == ["WT", "TC", "ET"] and brats.trained is False
    assert brats.display_name == "brats (built-in, untrained)"
    # the core's messages (ciml.bundle.read_metadata), one line each
    assert len(problems) == 3 and any("not a ciml-bundle metadata file" in p for p in problems)
    assert any("metadata.json: unreadable (" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_summary_and_register(models_dir, tmp_path):
    brats = models.read_model(models_dir / "brats")
    text = models.summary(brats)
    assert "Sub-task whole: WT from flair + t1, t1ce, t2." in text and "Untrained" in text
    first = models.register_bundle(models_dir / "brats", tmp_path / "mine")
    second = models.register_bundle(models_dir / "brats", tmp_path / "mine")
    assert (first.name, second.name) == ("brats", "brats-2")
    assert models.read_model(second).card == brats.card
    with pytest.raises(models.ModelError, match="no metadata.json"):
        models.read_model(tmp_path)
    assert models.user_models_dir("/home/u/.config/slicer.org/Slicer.ini").as_posix() == \
        "/home/u/.config/slicer.org/CIMLSegmentation/models"


def test_a_card_the_core_rejects_is_one_model_error(models_dir, tmp_path):
    """No defaults of its own: a card without a reference is refused as the core refuses it."""
    bad = tmp_path / "no-reference"
    bad.mkdir()
    meta = json.loads((models_dir / "brats" / "metadata.json").read_text())
    del meta["card"]["reference"]
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(models.ModelError, match="model card: reference: missing") as caught:
        models.read_model(bad)
    assert "\n" not in str(caught.value)
    brats = models.read_model(models_dir / "brats")
    assert brats.card == preset("brats") and brats.kind("flair") == "MR"


def test_device_choices_come_from_the_core():
    assert [process.device_label(d) for d in DEVICES] == ["Auto", "CPU", "GPU (CUDA)"]
    assert DEVICES[0] == "auto"


def test_device_index_falls_back_to_auto_for_a_stale_saved_value():
    assert [process.device_index(DEVICES, d) for d in DEVICES] == list(range(len(DEVICES)))
    for stale in ("gpu", "CUDA", "", None, "mps"):  # a scene saved by another version, or edited
        assert process.device_index(DEVICES, stale) == 0


# --- roles ----------------------------------------------------------------------------------

def test_role_table_defaults_from_cards():
    rows = roles.role_table(BRATS)
    assert [(r.target, r.subtask, r.primary, r.auxiliaries) for r in rows] == [
        ("WT", "whole", "flair", ["t1", "t1ce", "t2"]),
        ("TC", "core", "t1ce", ["t1", "t2", "flair"]),
        ("ET", "core", "t1ce", ["t1", "t2", "flair"])]
    assert [(r.target, r.primary, r.auxiliaries) for r in roles.role_table(AUTOPET)] == [("lesion", "pet", ["ct"])]
    assert rows[0].cells == ("WT", "whole", "flair", "t1, t1ce, t2")  # the table's columns, as the panel shows them
    assert roles.modality_label(BRATS, "flair") == "flair (primary for WT; auxiliary for TC, ET)"
    assert roles.modality_label(BRATS, "t1") == "t1 (auxiliary for WT, TC, ET)"
    assert roles.modality_label(AUTOPET, "ct") == "ct (auxiliary for lesion)"


@pytest.mark.parametrize("names, expected", [
    (["BraTS_001_flair", "BraTS_001_t1", "BraTS_001_t1ce", "BraTS_001_t2"],
     {"t1": "BraTS_001_t1", "t1ce": "BraTS_001_t1ce", "t2": "BraTS_001_t2", "flair": "BraTS_001_flair"}),
    (["T2w", "t2-flair", "T1 post", "T1w"], {"t1": "T1w", "t1ce": "T1 post", "t2": "T2w", "flair": "t2-flair"}),
    (["FLAIR", "T1c", "T1", "T2"], {"t1": "T1", "t1ce": "T1c", "t2": "T2", "flair": "FLAIR"}),
    (["3: t1ce", "4: T1 pre", "AX T2 FLAIR"], {"t1": "4: T1 pre", "t1ce": "3: t1ce", "t2": None, "flair": "AX T2 FLAIR"}),
    (["MRHead"], {"t1": None, "t1ce": None, "t2": None, "flair": None}),
])
def test_auto_select_brats_names(names, expected):
    assert roles.auto_select(names, BRATS) == expected


def test_auto_select_pet_ct_names():
    assert roles.auto_select(["CT 3mm", "PET SUV"], AUTOPET) == {"pet": "PET SUV", "ct": "CT 3mm"}
    assert roles.auto_select(["patient7_SUV", "patient7_CTres"], AUTOPET) == {"pet": "patient7_SUV", "ct": "patient7_CTres"}
    assert roles.name_score("t2-flair", "flair") > roles.name_score("t2-flair", "t2") > 0
    assert roles.name_score("whatever", "flair") == 0


def test_apply_disabled_reasons():
    ok = {"t1": "n1", "t2": "n2"}
    assert roles.apply_disabled_reason(True, ok) == ""
    assert roles.apply_disabled_reason(False, ok) == "Choose a model first."
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t2": None, "flair": ""}) == "Select a volume for: t2, flair."
    assert roles.apply_disabled_reason(True, {"t1": "n1", "t2": "n1"}) == "The same volume is selected for t1 and t2."


# --- progress -------------------------------------------------------------------------------

def test_json_lines_parser_partial_lines_and_noise():
    parser = progress.JsonLineParser()
    assert parser.feed('{"event": "progress", "stage": "load", "fra') == []
    assert parser.feed('ction": 0.25}\nWarning: something\n[1, 2]\n\n{"event": "pro') == [
        {"event": "progress", "stage": "load", "fraction": 0.25}]
    assert parser.noise == ["Warning: something", "[1, 2]"]
    assert parser.feed('gress", "stage": "x", "fraction": 0.5}\r\n{"no_event": 1}\n') == [
        {"event": "progress", "stage": "x", "fraction": 0.5}]
    assert parser.feed('{"event": "done"}') == [] and parser.flush() == [{"event": "done"}]
    assert parser.noise[-1] == '{"no_event": 1}'


def test_status_and_elapsed_texts():
    assert [progress.format_duration(s) for s in (0, 7.4, 125, 3723, None, -1)] == \
        ["0:00", "0:07", "2:05", "1:02:03", "", ""]
    event = {"event": "progress", "stage": "sliding_window", "fraction": 0.456, "elapsed_s": 3, "eta_s": 12}
    assert progress.status_text(event) == "Sliding window: 46%, about 0:12 left"
    assert progress.status_text({"event": "progress", "stage": "heat-maps", "fraction": 1.2}) == "Heat maps: 100%"
    assert progress.status_text({"event": "error", "message": "boom"}) == "Failed: boom"
    assert progress.status_text({"event": "done"}) == "Done."
    assert progress.progress_percent({"fraction": "x"}) == 0
    assert progress.elapsed_text(65) == "Elapsed 1:05"


# --- geometry and report --------------------------------------------------------------------

def _grid(**change):
    grid = geometry.geometry([0, 0, 0], [1, 1, 1], [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], [240, 240, 155])
    grid.update(change)
    return grid


def test_geometry_differs_decision():
    assert not geometry.geometry_differs(_grid(), _grid())
    assert not geometry.geometry_differs(_grid(), _grid(origin=[1e-5, 0, 0]))  # float noise
    assert geometry.geometry_differs(_grid(), _grid(origin=[0.5, 0, 0]))
    assert geometry.geometry_differs(_grid(), _grid(spacing=[1, 1, 1.2]))
    assert geometry.geometry_differs(_grid(), _grid(dimensions=[240, 240, 154]))
    assert geometry.geometry_differs(_grid(), _grid(directions=[[1, 0, 0], [0, -1, 0], [0, 0, 1]]))


def test_report_plain_parts(tmp_path):
    report_json = {"targets": {"WT": {"voxels": 10, "volume_ml": 12.5, "contributions": {"flair": 0.6, "t1": 0.1}},
                          "TC": {"volume_ml": 3, "contributions": {}, "warnings": ["small"]}},
              "warnings": ["ran on CPU after CUDA ran out of memory"]}
    rows = report.relations_rows(report_json, ["t1", "flair"])
    assert rows == [("WT", [0.1, 0.6], 12.5), ("TC", [None, None], 3.0)]
    as_list = dict(report_json, targets=[dict(name="WT", **report_json["targets"]["WT"])])
    assert report.relations_rows(as_list, ["flair"]) == [("WT", [0.6], 12.5)]
    assert report.report_warnings(report_json) == ["ran on CPU after CUDA ran out of memory", "TC: small"]
    assert report.format_share(0.456) == "46%" and report.format_share(None) == ""
    for name in ("cam_flair.nrrd", "cam_WT_flair.nrrd", "cam_t1_pre.nii.gz", "segmentation.nrrd", "report.json"):
        (tmp_path / name).write_text("")
    files = report.heat_map_files(str(tmp_path), ["flair", "t1_pre"], ["WT"])
    assert sorted(files) == ["WT/flair", "flair", "t1_pre"]
    specs = report.segment_specs(BRATS)
    assert [(s["name"], s["label"]) for s in specs] == [("WT", 2), ("TC", 1), ("ET", 4)]
    assert [s["includes"] for s in specs] == [[1, 2, 4], [1, 4], [4]], "segments overlap as regions nest"
    term = report.terminology_string(AUTOPET.targets[0].terminology)
    assert "~SCT^52988006^Lesion~" in term and term.count("~") == 6
    assert report.terminology_string(None) == ""


def test_missing_requirements():
    versions = {"torch": "2.3.1+cu121", "monai": "1.3.2", "scipy": "1.13.0"}
    needed = [("torch", ">=2.2"), ("monai", ">=1.4"), ("scipy", ">=1.10"), ("safetensors", ">=0.4")]
    assert requirements.missing(needed, versions.get) == ["monai>=1.4", "safetensors>=0.4"]
    assert requirements.version_tuple("2.10.0rc1") == (2, 10, 0)
    assert requirements.missing([("pytest", ">=1")]) == []  # real metadata of this environment
