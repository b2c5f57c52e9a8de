"""MONAI datasets: the same cases in three layouts give the same batches; balanced crops."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from data_helpers import SIZE, brats_images, brats_label, grid, tiny_card, write_case_2020

from ciml.data import list_cases, write_image
from ciml.data.datasets import (
    NO_AUGMENTATION,
    Augmentation,
    build_dataset,
    build_loaders,
    split_records,
    train_transforms,
)

CASES = ("case_a", "case_b", "case_c")


@pytest.fixture(scope="module")
def three_layouts(tmp_path_factory):
    """The same three cases as a BraTS 2020 folder, a datalist and a CSV folder (own files each)."""
    root = tmp_path_factory.mktemp("layouts")
    entries = []
    for seed, case in enumerate(CASES):
        label = brats_label(seed)
        images = brats_images(label, seed)
        write_case_2020(root / "brats", case, images, label, grid())
        entry = {"case": case, "label": f"labels/{case}.nii.gz"}
        for name, image in images.items():
            write_image(image, grid(), root / "datalist" / "images" / f"{case}_{name}.nii.gz")
            write_image(image, grid(), root / "csv" / case / f"{name}.nrrd")
            entry[name] = f"images/{case}_{name}.nii.gz"
        write_image(label, grid(), root / "datalist" / "labels" / f"{case}.nii.gz")
        write_image(label, grid(), root / "csv" / case / "seg.mha")
        entries.append(entry)
    (root / "datalist" / "dataset.json").write_text(json.dumps({"training": entries}))
    with open(root / "csv" / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", "t1", "t1ce", "t2", "flair", "label"])
        writer.writeheader()
        for case in CASES:
            writer.writerow({"case": case, **{n: f"{case}/{n}.nrrd" for n in ("t1", "t1ce", "t2", "flair")},
                             "label": f"{case}/seg.mha"})
    return root


def _batches(loader):
    return [(batch["case"], batch["image"], batch["label"]) for batch in loader]


def test_three_layouts_give_identical_batches(three_layouts):
    card = tiny_card()
    results = {}
    for layout in ("brats", "datalist", "csv"):
        records = list_cases(three_layouts / layout)
        assert [r["case"] for r in records] == list(CASES)
        loaders = build_loaders(card, records, records[:1], augmentation=NO_AUGMENTATION, seed=3)
        results[layout] = {name: _batches(loader) for name, loader in loaders.items()}
    for layout in ("datalist", "csv"):
        for name in ("train", "validation"):
            for (case_a, image_a, label_a), (case_b, image_b, label_b) in zip(results["brats"][name],
                                                                              results[layout][name]):
                assert case_a == case_b
                assert torch.equal(image_a, image_b) and torch.equal(label_a, label_b)
    cases, image, label = results["brats"]["train"][0]
    patch = card.training.patch_size
    assert image.shape == (card.training.batch_size, 4, *patch) and image.dtype == torch.float32
    assert label.shape == (card.training.batch_size, 3, *patch) and label.dtype == torch.float32
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0}
    [(_, whole, regions)] = results["brats"]["validation"]
    assert whole.shape == (1, 4, *SIZE) and regions.shape == (1, 3, *SIZE)


def test_crops_are_balanced_between_foreground_and_background(tmp_path):
    card = tiny_card()
    size = (40, 40, 40)
    label = np.zeros(size, np.uint8)
    label[:3, :3, :3] = 4                               # a small tumour in a corner
    images = brats_images(label)
    write_case_2020(tmp_path, "corner", images, label, grid(size=size))
    transform = train_transforms(card, augmentation=Augmentation(samples_per_case=40))
    [samples] = list(build_dataset(list_cases(tmp_path), transform, cache="none", seed=0))
    with_tumour = np.mean([bool(s["label"].any()) for s in samples])
    assert 0.25 < with_tumour < 0.75                    # 1:1 positive/negative centres
    assert all(s["image"].shape == (4, 16, 16, 16) for s in samples)


def test_unlabelled_cases_get_their_own_loader_and_disk_cache_works(three_layouts, tmp_path):
    card = tiny_card()
    records = list_cases(three_layouts / "brats")
    unlabelled = [{k: v for k, v in r.items() if k not in ("label", "label_convention")} for r in records[:2]]
    loaders = build_loaders(card, records[2:] + unlabelled, cache="disk", cache_dir=str(tmp_path / "cache"))
    assert set(loaders) == {"train", "unlabelled"}
    [batch] = list(loaders["unlabelled"])
    assert batch["image"].shape == (2, 4, 16, 16, 16) and "label" not in batch
    assert any((tmp_path / "cache" / "unlabelled").iterdir())


def test_split_records_is_seeded_and_keeps_unlabelled_in_training(three_layouts):
    records = list_cases(three_layouts / "brats") + [{"case": "u", "t1": "x"}]
    train, validation = split_records(records, 0.34, seed=1)
    assert len(validation) == 1 and {"u"} <= {r["case"] for r in train}
    assert split_records(records, 0.34, seed=1) == (train, validation)
    assert len(split_records(records[:1], 0.9)[0]) == 1
