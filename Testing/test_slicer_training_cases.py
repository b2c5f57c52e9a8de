"""Adding a corrected case to the training cases, from plain values as the glue passes them
(arrays as ``slicer.util.arrayFromVolume`` gives them, the grid in RAS), read back as the worker
reads it, and trained on with ``ciml train --data`` for two steps."""

import datetime
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)
from conftest import tiny

from ciml.cli.main import main
from ciml.config import card_from_dict, preset_dict
from ciml.data import list_cases, load_record
from CIMLSegmentationLib import segments, training, trainingcases
from CIMLSegmentationLib.geometry import geometry
from CIMLSegmentationLib.report import segment_specs

SHAPE_KJI = (20, 24, 28)  # [k, j, i], as arrayFromVolume gives it
# A RAS grid turned a quarter about z and off the origin, so
# the LPS conversion is exercised on origin and directions alike.
GRID = geometry(origin=(10.0, -20.0, 30.0), spacing=(1.5, 1.0, 2.0),
                directions=[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dimensions=SHAPE_KJI[::-1])


@pytest.fixture
def card(tmp_path):
    data = tiny(preset_dict("brats"))
    data["spacing"] = None
    data["training"].update({"batch_size": 1, "validation_interval": 1})
    path = tmp_path / "card.json"
    card_from_dict(data).to_json(path)
    return card_from_dict(data), path


def _case(seed: int, card):
    """Four modality arrays and the masks of the three nested segments, as the glue reads them."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(SHAPE_KJI)
    blob = ((k - 10) ** 2 + (j - 12) ** 2 + (i - 14) ** 2)
    images = {m: (rng.normal(100, 5, SHAPE_KJI) + 80.0 * (blob < 50)).astype(np.float32) for m in card.modality_names}
    masks = {"WT": blob < 50, "TC": blob < 20, "ET": blob < 6}
    return images, masks


def test_a_case_written_from_plain_values_reads_back_with_its_names_labels_and_geometry(tmp_path, card):
    card, _ = card
    images, masks = _case(1, card)
    labels = trainingcases.label_map(masks, segment_specs(card))
    folder = tmp_path / "cases"
    case = trainingcases.case_name("Patient 7_t1ce", "t1ce")
    assert case == "Patient-7"
    written = trainingcases.write_case(folder, case, images, labels, GRID, card.modality_names)
    assert sorted(p.name for p in written.iterdir()) == sorted(
        f"Patient-7_{m}.nii.gz" for m in [*card.modality_names, "seg"])
    assert trainingcases.list_cases(folder, card.modality_names) == ["Patient-7"]

    # the files, in LPS: the RAS origin's x and y change sign, as do the directions' first two rows
    seg = sitk.ReadImage(str(written / "Patient-7_seg.nii.gz"))
    assert seg.GetSize() == SHAPE_KJI[::-1]
    assert np.allclose(seg.GetOrigin(), (-10.0, 20.0, 30.0)) and np.allclose(seg.GetSpacing(), (1.5, 1.0, 2.0))
    assert np.allclose(np.reshape(seg.GetDirection(), (3, 3)), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    assert sorted(np.unique(sitk.GetArrayFromImage(seg)).tolist()) == [0, 1, 2, 4]  # the model's values

    # as the worker reads it: the datalist wins detection, the regions are the segments again
    records = list_cases(folder)
    assert [r["case"] for r in records] == ["Patient-7"] and "label_convention" not in records[0]
    loaded = load_record(card, records[0])
    for index, target in enumerate(card.target_names):
        expected = np.transpose(masks[target], (2, 1, 0))  # [k, j, i] -> the core's [x, y, z]
        assert np.array_equal(loaded.regions[index] > 0.5, expected), target


def test_the_same_case_twice_asks_then_replaces_itself(tmp_path, card):
    card, _ = card
    images, masks = _case(2, card)
    labels = trainingcases.label_map(masks, segment_specs(card))
    folder = tmp_path / "cases"
    trainingcases.write_case(folder, "c1", images, labels, GRID, card.modality_names)
    assert trainingcases.case_exists(folder, "c1")
    with pytest.raises(trainingcases.CaseExists, match="the case c1 is in"):
        trainingcases.write_case(folder, "c1", images, 0 * labels, GRID, card.modality_names)
    trainingcases.write_case(folder, "c1", images, 0 * labels, GRID, card.modality_names, overwrite=True)
    seg = sitk.ReadImage(str(folder / "c1" / "c1_seg.nii.gz"))
    assert not sitk.GetArrayFromImage(seg).any()  # replaced, not kept
    assert trainingcases.list_cases(folder, card.modality_names) == ["c1"]
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no partial case left


def test_a_segment_matching_no_target_is_refused_and_nothing_is_written(tmp_path, card):
    card, _ = card
    _, masks = _case(3, card)
    with pytest.raises(segments.SegmentError, match="'Segment_1' match no target"):
        trainingcases.label_map({**masks, "Segment_1": masks["WT"]}, segment_specs(card))


def test_a_folder_with_another_datasets_list_is_refused(tmp_path, card):
    card, _ = card
    (tmp_path / "dataset.json").write_text(json.dumps({"training": []}))
    images, masks = _case(4, card)
    with pytest.raises(trainingcases.CaseFolderError, match="another dataset"):
        trainingcases.write_case(tmp_path, "c", images, trainingcases.label_map(masks, segment_specs(card)), GRID,
                                 card.modality_names)


def test_a_missing_modality_or_a_grid_that_does_not_fit_is_one_message(tmp_path, card):
    card, _ = card
    images, masks = _case(5, card)
    labels = trainingcases.label_map(masks, segment_specs(card))
    with pytest.raises(trainingcases.CaseFolderError, match="no image for flair"):
        trainingcases.write_case(tmp_path, "c", {m: v for m, v in images.items() if m != "flair"}, labels, GRID,
                                 card.modality_names)
    with pytest.raises(trainingcases.CaseFolderError, match="does not fit the grid"):
        trainingcases.write_case(tmp_path, "c", images, labels[:-1], GRID, card.modality_names)


def test_the_folders_line_counts_and_names_the_cases():
    assert trainingcases.cases_text(["a", "b"]) == "2 case(s): a, b"
    assert trainingcases.cases_text([]) == "No case yet."


def test_ciml_train_runs_two_steps_on_the_folder(tmp_path, card, capfd):
    card, card_path = card
    folder = tmp_path / "cases"
    for n in (1, 2):
        images, masks = _case(10 + n, card)
        trainingcases.write_case(folder, f"case{n}", images, trainingcases.label_map(masks, segment_specs(card)), GRID,
                                 card.modality_names)
    run = tmp_path / "run"
    assert main(["train", "--progress", "none", "--data", str(folder), "--out", str(run), "--card", str(card_path),
                 "--max-steps", "2", "--val-fraction", "0.5", "--device", "cpu"]) == 0
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["event"] == "step"] == [1, 2]
    assert (run / "bundle").is_dir()
    # the panel's validation Dice line, read from what the worker writes to stderr
    parsed = [training.validation_dice(line) for line in capfd.readouterr().err.splitlines()]
    step, dice = [p for p in parsed if p][-1]  # one validation per step (validation_interval 1)
    assert step == 2 and [part.split()[0] for part in dice.split(", ")] == list(card.target_names)


def test_the_fine_tuned_model_is_named_after_its_base_and_the_day(tmp_path):
    assert training.fine_tuned_name("brats-sample", datetime.date(2026, 1, 15)) == "brats-sample-finetuned-2026-01-15"
    assert training.validation_dice("step 12: 4 of 24 gates collapsed") is None
