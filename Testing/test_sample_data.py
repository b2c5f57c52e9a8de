"""Synthetic sample data: determinism, labels that match the images, the BraTS layout on disk,
the `ciml sample-data` command, and the primary-only Dice ceiling of the shapes task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ciml.cli.main import main
from ciml.config import preset
from ciml.data.synthetic import (
    MODALITIES,
    SIZES,
    case_ids,
    cue_predictor_dice,
    generate_case,
    primary_only_oracle_dice,
    write_cases,
)
from ciml.data.synthetic.brats_tumour import REGION
from ciml.data.synthetic.preview import render_case
from ciml.data.synthetic.shapes import (
    PRIMARY_ONLY_DICE_CEILING,
    measure_primary_only_ceiling,
    primary_only_oracle_choice,
)
from ciml.errors import CIMLError

KINDS = ("brats", "shapes")


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), image


@pytest.mark.parametrize("kind", KINDS)
def test_modalities_are_the_presets(kind):
    assert MODALITIES[kind] == preset(kind).modality_names
    assert tuple(generate_case(kind, 0).images) == MODALITIES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_per_seed_and_cases_differ(kind):
    first, again = generate_case(kind, 1, seed=5), generate_case(kind, 1, seed=5)
    other_seed, other_case = generate_case(kind, 1, seed=6), generate_case(kind, 2, seed=5)
    for name in first.images:
        assert first.images[name].dtype == np.float32
        np.testing.assert_array_equal(first.images[name], again.images[name])
    np.testing.assert_array_equal(first.label, again.label)
    for other in (other_seed, other_case):
        assert not np.array_equal(first.label, other.label)
        assert all(not np.array_equal(first.images[n], other.images[n]) for n in first.images)


def test_same_seed_writes_identical_files(tmp_path):
    write_cases("shapes", 2, tmp_path / "a", seed=3)
    write_cases("shapes", 2, tmp_path / "b", seed=3)
    write_cases("shapes", 2, tmp_path / "c", seed=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    assert len(files) == 2 * 4
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


def test_brats_tumour_varies_between_cases():
    cases = [generate_case("brats", i) for i in range(4)]
    centroids = [np.argwhere(c.label > 0).mean(axis=0) for c in cases]
    volumes = [int((c.label > 0).sum()) for c in cases]
    assert len({tuple(np.round(c)) for c in centroids}) == 4
    assert len(set(volumes)) == 4


@pytest.mark.parametrize("index", range(3))
def test_brats_intensities_match_labels(index):
    case = generate_case("brats", index, seed=11)
    label, brain, tissue = case.label, case.extras["brain"], case.extras["tissue"]
    assert set(np.unique(label)) == {0, 1, 2, 4}
    # The sub-regions' own signal (the structures that only an auxiliary shows are tested in
    # test_brats_phantom.py).
    edema, enhancing, necrosis = (case.extras["regions"] == REGION[name]
                                  for name in ("edema", "enhancing", "necrosis"))
    healthy = brain & (case.extras["regions"] == REGION["healthy"])

    def mean(modality, region):
        return float(case.images[modality][region].mean())

    # Skull-stripped: zero outside the brain, signal inside; tumour inside the brain.
    assert np.all(case.images["flair"][~brain] == 0) and mean("flair", brain) > 0
    assert not np.any(label[~brain])
    # Edema bright in FLAIR and T2.
    for modality in ("flair", "t2"):
        assert mean(modality, edema) > 1.3 * mean(modality, healthy)
    # Enhancing rim bright in T1ce only: above the necrosis and healthy tissue, and it
    # enhances (T1ce well above its own T1, each relative to white matter: sequences have
    # their own gain).
    csf, white = healthy & (tissue["csf"] > 0.9), healthy & (tissue["white"] > 0.9)
    assert csf.sum() > 100 and white.sum() > 100
    assert mean("t1ce", enhancing) > 1.5 * mean("t1ce", healthy)
    assert mean("t1ce", enhancing) > 3 * mean("t1ce", necrosis)
    assert mean("t1ce", enhancing) / mean("t1ce", white) > 1.5 * mean("t1", enhancing) / mean("t1", white)
    # Necrotic core dark in T1ce and T1.
    for modality in ("t1ce", "t1"):
        assert mean(modality, necrosis) < 0.6 * mean(modality, healthy)
    # Healthy contrast differs between sequences: CSF dark in T1 and FLAIR, bright in T2.
    assert mean("t1", csf) < 0.5 * mean("t1", white)
    assert mean("flair", csf) < 0.5 * mean("flair", white)
    assert mean("t2", csf) > 1.8 * mean("t2", white)
    # Noisy, not piecewise constant.
    assert case.images["t1"][white].std() > 0.02 * mean("t1", white)


@pytest.mark.parametrize("index", range(4))
def test_shapes_cue_marks_only_targets_and_echo_repeats_shapes(index):
    case = generate_case("shapes", index, seed=2)
    candidates, targets = case.extras["candidates"], case.extras["targets"]
    n = int(candidates.max())
    assert 4 <= n <= 8 and 1 <= len(targets) < n
    np.testing.assert_array_equal(case.label, np.isin(candidates, targets))
    cue = case.images["cue"]
    for number in range(1, n + 1):
        inside = cue[candidates == number]
        if number in targets:
            assert inside.max() > 0.5
        else:
            assert abs(inside.mean()) < 0.02 and inside.max() < 0.25
    # The echo repeats the primary: the same shapes with their brightness order kept
    # (another gain, its own noise).
    count = np.bincount(candidates.ravel())
    shapes_means, echo_means = (np.bincount(candidates.ravel(), case.images[m].ravel()) / count
                                for m in ("shapes", "echo"))
    assert np.corrcoef(shapes_means, echo_means)[0, 1] > 0.99
    assert np.corrcoef(case.images["shapes"].ravel(), case.images["echo"].ravel())[0, 1] > 0.3
    # The primary shows every candidate, targets or not.
    primary = case.images["shapes"]
    assert primary[candidates > 0].mean() > 5 * abs(primary[candidates == 0].mean())


def test_oracle_choice_matches_the_equal_volume_derivation():
    # n equal candidates, k = n/2 targets: predicting all gives 2k/(n+k) = 2/3 exactly.
    chosen, expected = primary_only_oracle_choice(np.full(6, 100.0))
    assert chosen.all() and expected == pytest.approx(2 / 3)
    # Odd n: k is n//2 or n//2+1, equally likely.
    chosen, expected = primary_only_oracle_choice(np.full(5, 10.0))
    assert chosen.all() and expected == pytest.approx((2 * 2 / 7 + 2 * 3 / 8) / 2)


def test_shapes_primary_only_ceiling_holds_and_the_cue_reaches_one():
    stats = measure_primary_only_ceiling(40, seed=0)
    # Per case the expected Dice is at most 2/3 (Jensen); the realised mean of 40 cases may
    # sit a little above it by chance, never far.
    assert stats["mean_expected_dice"] <= PRIMARY_ONLY_DICE_CEILING
    assert 0.55 < stats["mean_dice"] < PRIMARY_ONLY_DICE_CEILING + 0.03
    cue_dice = [cue_predictor_dice(generate_case("shapes", i)) for i in range(10)]
    assert min(cue_dice) > 0.98
    assert primary_only_oracle_dice(generate_case("shapes", 0)) < 0.9


def _check_layout(folder: Path, kind: str, size: str, seed: int, index: int,
                  variation: str = "standard") -> None:
    case_id = case_ids(kind, index + 1)[index]
    assert folder.name == case_id
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"{case_id}_{m}.nii.gz" for m in MODALITIES[kind]] + [f"{case_id}_seg.nii.gz"])
    grid = SIZES[kind][size]
    expected = generate_case(kind, index, seed=seed, size=size, variation=variation)
    # brats: the grid's shape at the case's own spacing (a zoom on the grid's), centred.
    zoom = expected.extras["acquisition"]["zoom"] if kind == "brats" else 1.0
    spacing = tuple(s * zoom for s in grid.spacing)
    for modality in MODALITIES[kind]:
        array, image = _read(folder / f"{case_id}_{modality}.nii.gz")
        assert image.GetSize() == grid.shape
        assert image.GetSpacing() == pytest.approx(spacing)
        assert image.GetSpacing() == pytest.approx(expected.spacing)
        assert image.GetOrigin() == pytest.approx(tuple(-(n - 1) / 2 * s for n, s in zip(grid.shape, spacing)))
        assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
        np.testing.assert_array_equal(array, expected.images[modality])
    label, image = _read(folder / f"{case_id}_seg.nii.gz")
    assert image.GetSize() == grid.shape
    np.testing.assert_array_equal(label, expected.label)
    assert set(np.unique(label)) == ({0, 1, 2, 4} if kind == "brats" else {0, 1})


@pytest.mark.parametrize("kind", KINDS)
def test_written_cases_have_the_brats_layout(tmp_path, kind):
    folders = write_cases(kind, 2, tmp_path / "data", seed=7)
    assert [f.name for f in folders] == case_ids(kind, 2)
    for index, folder in enumerate(folders):
        _check_layout(folder, kind, "small", 7, index)
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # no temp left


def test_full_size_brats_geometry(tmp_path):
    (folder,) = write_cases("brats", 1, tmp_path, size="full")
    image = sitk.ReadImage(str(folder / f"{folder.name}_seg.nii.gz"))
    label = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    assert set(np.unique(label)) == {0, 1, 2, 4}
    # The BraTS grid at the case's voxel zoom, the same zoom as the small case's: the same
    # anatomy in mm at two resolutions (tumour volumes agree to a few per cent).
    small = generate_case("brats", 0)
    zoom = small.extras["acquisition"]["zoom"]
    assert image.GetSize() == (240, 240, 155)
    assert image.GetSpacing() == pytest.approx((zoom,) * 3)
    assert image.GetSpacing() == pytest.approx(tuple(s / 2.5 for s in small.spacing))
    for value in (1, 2, 4):
        full_mm3 = (label == value).sum() * zoom ** 3
        small_mm3 = (small.label == value).sum() * small.spacing[0] ** 3
        assert full_mm3 == pytest.approx(small_mm3, rel=0.15), value


def test_cli_writes_then_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["sample-data", "--kind", "shapes", "--cases", "2", "--out", str(out), "--seed", "1"]) == 0
    _check_layout(out / "shapes-001", "shapes", "small", 1, 1)
    before = {p: p.read_bytes() for p in out.rglob("*.nii.gz")}
    capsys.readouterr()
    assert main(["sample-data", "--kind", "shapes", "--cases", "3", "--out", str(out), "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "shapes-000, shapes-001" in err and "nothing was written" in err
    assert not (out / "shapes-002").exists()
    assert {p: p.read_bytes() for p in out.rglob("*.nii.gz")} == before


def test_an_occupied_case_stops_the_whole_run_and_an_empty_one_does_not(tmp_path):
    (tmp_path / "shapes-001").mkdir()
    (tmp_path / "shapes-001" / "notes.txt").write_text("mine")
    with pytest.raises(CIMLError, match="shapes-001"):
        write_cases("shapes", 2, tmp_path)
    assert not (tmp_path / "shapes-000").exists()
    (tmp_path / "shapes-001" / "notes.txt").unlink()
    assert len(write_cases("shapes", 2, tmp_path)) == 2


@pytest.mark.parametrize("args, message", [
    (["--kind", "shapes", "--cases", "0"], "number of cases must be a whole number >= 1"),
    (["--kind", "shapes", "--cases", "-3"], "number of cases must be a whole number >= 1"),
    (["--kind", "knee", "--cases", "1"], "unknown sample-data kind 'knee' (known: brats, glioma, shapes)"),
    (["--kind", "brats", "--cases", "1", "--size", "huge"], "size must be one of small, full"),
    (["--kind", "brats", "--cases", "1", "--seed", "-1"], "seed must be >= 0"),
    (["--kind", "shapes", "--cases", "1", "--variation", "shifted"],
     "variation must be one of standard for kind shapes, got 'shifted'"),
    (["--kind", "brats", "--cases", "1", "--variation", "odd"], "variation must be one of standard, shifted"),
    (["--kind", "glioma", "--cases", "1", "--variation", "shifted"], "variation must be one of standard, no-mass-effect"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["sample-data", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ciml sample-data: error:") and message in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_writes_shifted_brats_cases(tmp_path, capsys):
    out = tmp_path / "shifted"
    assert main(["sample-data", "--kind", "brats", "--cases", "1", "--out", str(out), "--variation", "shifted"]) == 0
    assert "1 shifted brats case(s)" in capsys.readouterr().err
    _check_layout(out / "BraTS-sample-000", "brats", "small", 0, 0, variation="shifted")
    standard = generate_case("brats", 0)
    shifted = generate_case("brats", 0, variation="shifted")
    assert shifted.spacing[0] > standard.spacing[0]  # the shifted spec's larger voxels
    assert _read(out / "BraTS-sample-000" / "BraTS-sample-000_seg.nii.gz")[1].GetSpacing() \
        == pytest.approx(shifted.spacing)


def test_cli_rejects_a_non_number_of_cases(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample-data", "--kind", "shapes", "--cases", "two", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "invalid int value: 'two'" in capsys.readouterr().err


def test_cli_as_a_real_process(tmp_path):
    command = [sys.executable, "-m", "ciml", "sample-data", "--kind", "brats", "--cases", "1",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _check_layout(tmp_path / "BraTS-sample-000", "brats", "small", 0, 0)
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "already holds BraTS-sample-000" in again.stderr and "Traceback" not in again.stderr


def test_importing_the_generators_does_not_import_matplotlib():
    code = "import sys, ciml.data.synthetic; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_preview_renders_a_png(tmp_path):
    path = render_case(generate_case("shapes", 0), tmp_path / "case.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
