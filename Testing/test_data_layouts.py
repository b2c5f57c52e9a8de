"""Label conventions and dataset layouts: detection, case records, loading each layout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import (
    BRATS_2020_TO_2023,
    BRATS_2020_TO_MSD,
    SIZE,
    brats_images,
    brats_label,
    grid,
    remap,
    tiny_card,
    write_case_2020,
)

from ciml.data import (
    CONVENTIONS,
    DataError,
    check_records,
    detect_layout,
    label_to_regions,
    list_cases,
    load_record,
    regions_to_label,
    write_datalist,
    write_image,
)

MSD_ORDER = ("flair", "t1", "t1ce", "t2")


def test_regions_and_back_is_the_identity_on_brats_label_maps():
    card = tiny_card()
    label = brats_label(3)
    regions = label_to_regions(label, card)
    assert regions.shape == (3, *SIZE) and regions.dtype == np.float32
    wt, tc, et = regions.astype(bool)
    assert np.array_equal(wt, label > 0) and np.array_equal(tc, np.isin(label, (1, 4)))
    assert (et <= tc).all() and (tc <= wt).all()
    assert np.array_equal(regions_to_label(regions, card), label)


def test_small_pieces_of_tumour_are_dropped_by_volume_with_their_nested_labels():
    from dataclasses import replace

    card = tiny_card()
    card = replace(card, inference=replace(card.inference, min_component_ml=0.05))
    label = np.zeros((20, 20, 20), dtype=np.uint16)
    label[2:8, 2:8, 2:8] = 2          # 216 voxels: kept
    label[4:6, 4:6, 4:6] = 4          # nested inside it: kept with it
    label[12:15, 12:15, 12:15] = 1    # 27 voxels: one piece with the diagonal neighbour below
    label[15, 15, 15] = 4             # touches the piece above by a corner (26-connected)
    label[18, 2, 18] = 4              # a lone speck
    regions = label_to_regions(label, card)
    kept = regions_to_label(regions, card, voxel_ml=0.001)  # 1 mm voxels: 0.05 ml = 50 voxels
    assert np.array_equal(kept[:10], label[:10])  # the large piece and its core are untouched
    assert not kept[10:].any()  # the 28-voxel piece and the speck are gone, ET and TC included
    assert np.array_equal(regions_to_label(regions, card, voxel_ml=0.01)[10:15], label[10:15])  # 10x larger voxels: kept
    assert np.array_equal(regions_to_label(regions, card), label)  # no voxel size: nothing dropped


@pytest.mark.parametrize("name,mapping", [("brats2020", None), ("brats2023", BRATS_2020_TO_2023),
                                          ("msd", BRATS_2020_TO_MSD)])
def test_dataset_conventions_to_regions_and_back_are_the_identity(name, mapping):
    card = tiny_card()
    label = brats_label(4)
    stored = label if mapping is None else remap(label, mapping)
    on_card = CONVENTIONS[name].apply(stored, "seg.nii.gz")
    assert np.array_equal(on_card, label)
    predicted = regions_to_label(label_to_regions(on_card, card), card)
    assert np.array_equal(CONVENTIONS[name].invert(predicted), stored)


def test_inconsistent_regions_paint_the_innermost_target_last():
    card = tiny_card()
    regions = np.zeros((3, 2, 1, 1), np.float32)
    regions[2, 0] = 0.9            # ET without TC or WT: ET wins (painted last)
    regions[0, 1] = regions[1, 1] = 0.7   # WT and TC: TC
    assert regions_to_label(regions, card)[:, 0, 0].tolist() == [4, 1]


@pytest.mark.parametrize("name,value,hint", [("brats2020", 3, "choose the brats2023 layout"),
                                             ("brats2023", 4, "choose the brats2020 layout")])
def test_a_label_map_of_the_other_brats_convention_is_refused(name, value, hint):
    label = brats_label()
    label[label == 4] = value
    with pytest.raises(DataError, match=rf"seg\.nii\.gz: has label value\(s\) {value}, which the {name} "
                                        rf"convention does not use .*{hint}"):
        CONVENTIONS[name].apply(label, "seg.nii.gz")


def test_non_integer_label_values_are_refused():
    with pytest.raises(DataError, match="p.nii: holds non-integer values"):
        CONVENTIONS["brats2020"].apply(np.full(SIZE, 0.5), "p.nii")


def _write_brats2023(root, case, images, label):
    names = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
    for name, image in images.items():
        write_image(image, grid(), root / case / f"{case}-{names[name]}.nii.gz")
    write_image(remap(label, BRATS_2020_TO_2023), grid(), root / case / f"{case}-seg.nii.gz")


def _write_msd(root, case, images, label):
    stack = np.stack([images[n] for n in MSD_ORDER], axis=-1)   # [x, y, z, channel]
    image = sitk.GetImageFromArray(stack.transpose(3, 2, 1, 0), isVector=False)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(root / "imagesTr" / f"{case}.nii.gz"))
    (root / "imagesTr" / f"._{case}.nii.gz").write_bytes(b"macOS resource fork")
    write_image(remap(label, BRATS_2020_TO_MSD), grid(), root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "training": [{"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}]}))


def _pet_ct(root, case_dir, ct_name, pet_name, seg_path, label):
    rng = np.random.default_rng(0)
    ct = np.where(label > 0, 40.0, -100.0) + rng.normal(0, 10, SIZE)
    pet_grid = grid(size=(12, 10, 8), spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5))
    pet = np.zeros(pet_grid.size)
    pet[4:8, 4:7, 3:6] = 12.0
    write_image(ct, grid(), case_dir / ct_name)
    write_image(pet + rng.uniform(0, 1, pet.shape), pet_grid, case_dir / pet_name)
    write_image(label, grid(), seg_path)


@pytest.fixture
def one_case_in_every_layout(tmp_path):
    label = brats_label(1)
    images = brats_images(label, 1)
    write_case_2020(tmp_path / "brats2020", "B_001", images, label, grid())
    _write_brats2023(tmp_path / "brats2023", "B-001", images, label)
    _write_msd(tmp_path / "msd", "BRATS_001", images, label)
    lesion = (brats_label(2) > 0).astype(np.uint8)
    study = tmp_path / "autopet" / "PETCT_0af7" / "03-12-2002-NA-PET-CT"
    _pet_ct(tmp_path, study, "CTres.nii.gz", "SUV.nii.gz", study / "SEG.nii.gz", lesion)
    hecktor = tmp_path / "hecktor"
    nodes = lesion.copy()
    nodes[:, :, :8] *= 2
    _pet_ct(tmp_path, hecktor / "imagesTr", "CHUM-001__CT.nii.gz", "CHUM-001__PT.nii.gz",
            hecktor / "labelsTr" / "CHUM-001.nii.gz", nodes)
    (tmp_path / "datalist").mkdir()
    (tmp_path / "datalist" / "dataset.json").write_text(json.dumps({"training": [
        {"case": "B_001", **{n: f"../brats2020/B_001/B_001_{n}.nii.gz" for n in images},
         "label": "../brats2020/B_001/B_001_seg.nii.gz"}]}))
    (tmp_path / "csv").mkdir()
    with open(tmp_path / "csv" / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", *images, "label"])
        writer.writeheader()
        writer.writerow({"case": "B_001", **{n: f"../brats2020/B_001/B_001_{n}.nii.gz" for n in images},
                         "label": ""})
    return tmp_path, label


@pytest.mark.parametrize("layout", ["brats2020", "brats2023", "msd", "autopet", "hecktor", "datalist", "csv"])
def test_layout_detection(one_case_in_every_layout, layout):
    root, _ = one_case_in_every_layout
    assert detect_layout(root / layout) == layout
    records = list_cases(root / layout)
    assert len(records) == 1 and records[0]["case"]
    assert list_cases(root / layout, layout=layout) == records


@pytest.mark.parametrize("layout", ["brats2020", "brats2023", "msd", "datalist"])
def test_every_brats_layout_gives_the_same_case(one_case_in_every_layout, layout):
    root, label = one_case_in_every_layout
    card = tiny_card()
    case = load_record(card, list_cases(root / layout)[0])
    reference = load_record(card, list_cases(root / "brats2020")[0])
    np.testing.assert_array_equal(case.image, reference.image)
    np.testing.assert_array_equal(case.regions, label_to_regions(label, card))
    assert case.grid.same_grid(grid()) and not case.warnings


def test_csv_case_without_label_is_unlabelled(one_case_in_every_layout):
    root, _ = one_case_in_every_layout
    [record] = list_cases(root / "csv" / "cases.csv")
    assert "label" not in record
    assert load_record(tiny_card(), record).regions is None


@pytest.mark.parametrize("layout,targets", [("autopet", {"lesion": 1}), ("hecktor", {"GTVp": 1, "GTVn": 2})])
def test_pet_ct_layouts_bring_pet_onto_the_ct_grid(one_case_in_every_layout, layout, targets):
    root, _ = one_case_in_every_layout
    card = tiny_card(layout if layout == "hecktor" else "autopet")
    [record] = list_cases(root / layout)
    assert record["label_convention"] == layout
    case = load_record(card, record)
    assert case.image.shape == (2, *SIZE) and case.reference.same_grid(grid())
    assert any(w.startswith(f"case {record['case']}: pet image") for w in case.warnings)
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0   # windowed to 0..1
    assert case.regions.shape == (len(targets), *SIZE) and case.regions.any(axis=(1, 2, 3)).all()


def test_undetectable_and_unknown_layouts_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: matches no known layout"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(DataError, match="'nnunet' is unknown"):
        list_cases(tmp_path / "empty", layout="nnunet")
    with pytest.raises(DataError, match="holds no case of the brats2020 layout"):
        list_cases(tmp_path / "empty", layout="brats2020")


def test_a_wrong_explicit_layout_cannot_misread_labels(one_case_in_every_layout):
    root, _ = one_case_in_every_layout
    # BraTS 2023 files read as BraTS 2020 files: the file names do not match, so no case.
    with pytest.raises(DataError, match="no case of the brats2020 layout"):
        list_cases(root / "brats2023", layout="brats2020")
    [record] = list_cases(root / "brats2023")
    with pytest.raises(DataError, match=r"B-001-seg\.nii\.gz: has label value\(s\) 3, which the brats2020"):
        load_record(tiny_card(), {**record, "label_convention": "brats2020"})


def test_check_records_names_what_is_missing(one_case_in_every_layout):
    root, _ = one_case_in_every_layout
    [record] = list_cases(root / "brats2020")
    check_records([record], tiny_card().modality_names, require_label=True)
    with pytest.raises(DataError, match="case B_001: has no image for pet, ct"):
        check_records([record], ("pet", "ct"))
    gone = {**record, "t2": str(root / "nowhere.nii.gz")}
    with pytest.raises(DataError, match=r"case B_001: t2 .*nowhere\.nii\.gz: file not found"):
        check_records([gone], tiny_card().modality_names)


def test_records_written_as_a_datalist_read_back_the_same(one_case_in_every_layout, tmp_path):
    root, _ = one_case_in_every_layout
    records = list_cases(root / "brats2020") + list_cases(root / "msd")
    path = write_datalist(records, root / "brats2020" / "list.json")
    assert "B_001/B_001_t1.nii.gz" in path.read_text()      # relative to the json's folder
    assert list_cases(path) == records


def test_case_folders_with_other_modality_names_use_the_card_values(tmp_path):
    card = tiny_card("shapes")
    label = (brats_label(5) > 0).astype(np.uint8)
    images = brats_images(label, 5)
    names = dict(zip(("t1", "t1ce", "t2"), card.modality_names))
    write_case_2020(tmp_path, "shapes_000", {names[k]: images[k] for k in names}, label, grid())
    assert detect_layout(tmp_path) == "brats2020"
    [record] = list_cases(tmp_path)
    assert set(record) == {"case", "label", *card.modality_names}     # no BraTS label convention
    case = load_record(card, record)
    assert case.image.shape == (3, *SIZE) and np.array_equal(case.regions[0], label)
