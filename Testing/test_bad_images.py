"""Inputs that used to pass silently: truncated files and NaN or infinite voxels.

ITK's NIfTI reader zero-fills a short file and sets NaN and infinite floats to 0 without a word;
these tests check that a short file of every format is refused with one line naming it, and that
non-finite voxels are replaced with a warning in report.json (or refused when nothing is left).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import SIZE, brats_images, brats_label, grid, tiny_card

from ciml.data import DataError, load_case, read_image, write_dicom_series, write_image
from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.resources import builtin_model

MODALITIES = ("t1", "t1ce", "t2", "flair")
# What the file is cut to: a real .nii.gz cut after 2,000 bytes (as in the report), the
# others by one byte (the hardest case for an uncompressed file) or to half (for a compressed one,
# whose last bytes are gzip's checksum).
CUTS = {
    ".nii.gz": (True, lambda n: 2000),
    ".nii": (False, lambda n: n - 1),
    ".nrrd": (True, lambda n: n // 2),
    ".mha": (False, lambda n: n - 1),
}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-images")
    write_case(generate_case("brats", 0, seed=7777, size="small"), root)
    return root / case_ids("brats", 1)[0]


def _inputs(case: Path, **replaced: Path) -> dict[str, str]:
    return {m: str(replaced.get(m, case / f"{case.name}_{m}.nii.gz")) for m in MODALITIES}


def _segment(inputs: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    args = [arg for m, p in inputs.items() for arg in ("--input", f"{m}={p}")]
    command = [sys.executable, "-m", "ciml", "segment", "--model", str(builtin_model()), *args,
               "--out", str(out), "--no-cam", "--progress", "none"]
    return subprocess.run(command, capture_output=True, text=True)


def _truncated_copy(image: sitk.Image, path: Path, compress: bool, cut) -> Path:
    write_image(image, image, path, compress=compress)
    data = path.read_bytes()
    path.write_bytes(data[:cut(len(data))])
    return path


def _one_line_refusal(message: str, path: Path) -> None:
    assert str(path) in message and "is truncated" in message, message
    assert "\n" not in message.strip() and "Traceback" not in message


@pytest.mark.parametrize("suffix", list(CUTS))
def test_a_truncated_file_is_refused_by_the_library_and_the_command(case, tmp_path, suffix):
    compress, cut = CUTS[suffix]
    flair = read_image(case / f"{case.name}_flair.nii.gz")
    bad = _truncated_copy(flair, tmp_path / f"flair{suffix}", compress, cut)
    card = tiny_card()
    with pytest.raises(DataError) as error:
        load_case(card, _inputs(case, flair=bad), case_id="c1")
    assert str(error.value).startswith(f"case c1: flair image {bad}: is truncated")
    _one_line_refusal(str(error.value), bad)

    out = tmp_path / "out"
    run = _segment(_inputs(case, flair=bad), out)
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    _one_line_refusal(run.stderr, bad)
    assert not out.exists() or not any(out.iterdir()), "nothing written for a refused case"


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
@pytest.mark.parametrize("compress", [True, False])
def test_a_truncated_detached_data_file_is_refused(tmp_path, suffix, compress):
    flair = brats_images(brats_label())["flair"]
    header = write_image(flair, grid(), tmp_path / f"flair{suffix}", compress=compress)
    data = next(p for p in tmp_path.iterdir() if p != header)
    data.write_bytes(data.read_bytes()[:1000] if compress else data.read_bytes()[:-1])
    with pytest.raises(DataError) as error:
        read_image(header, what="flair image")
    assert str(error.value).startswith(f"flair image {header}: is truncated")


def test_a_missing_detached_data_file_is_one_line(tmp_path):
    header = write_image(brats_images(brats_label())["flair"], grid(), tmp_path / "flair.mhd")
    data = next(p for p in tmp_path.iterdir() if p != header)
    data.unlink()
    with pytest.raises(DataError, match=f"its data file {data} is missing"):
        read_image(header)


def test_a_truncated_dicom_slice_is_refused(tmp_path):
    values = np.round(brats_images(brats_label())["flair"]).astype(np.int16)
    series = write_dicom_series(values, grid(), tmp_path / "series")
    last = sorted(series.iterdir())[-1]  # without it the volume would just be one slice short
    last.write_bytes(last.read_bytes()[:-10])
    with pytest.raises(DataError) as error:
        read_image(series, what="flair image")
    message = str(error.value)
    assert message.startswith(f"flair image {series}: its file {last.name} cannot be read")
    assert "truncated" in message


def test_a_complete_file_whose_gzip_trailer_is_cut_still_reads(tmp_path):
    values = brats_images(brats_label())["flair"].astype(np.int16)
    path = write_image(values, grid(), tmp_path / "flair.nii.gz")
    path.write_bytes(path.read_bytes()[:-4])  # only gzip's length field is missing: every voxel is there
    assert np.array_equal(sitk.GetArrayFromImage(read_image(path)).T, values)


def _with_nonfinite(values: np.ndarray) -> tuple[np.ndarray, dict[str, tuple]]:
    """A copy of ``values`` with two NaN, one +inf and one -inf voxel inside the brain, and where."""
    brain = [tuple(index) for index in np.argwhere(values > 0)[:4]]
    where = dict(zip(("nan", "nan2", "+inf", "-inf"), brain))
    values = values.copy()
    for kind, value in (("nan", np.nan), ("nan2", np.nan), ("+inf", np.inf), ("-inf", -np.inf)):
        values[where[kind]] = value
    return values, where


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_and_infinite_voxels_are_replaced_with_a_warning(tmp_path, suffix):
    """NIfTI included, whose reader hides them by setting them to 0."""
    values, where = _with_nonfinite(brats_images(brats_label())["flair"])
    path = write_image(values, grid(), tmp_path / f"flair{suffix}")
    finite = values[np.isfinite(values)]
    with pytest.raises(DataError, match="has 2 NaN and 2 infinite voxel"):
        read_image(path)  # without a list for the warning: refused
    warnings: list[str] = []
    read = sitk.GetArrayFromImage(read_image(path, what="flair image", warnings=warnings)).T
    assert read[where["nan"]] == 0 and read[where["nan2"]] == 0
    assert read[where["+inf"]] == finite.max() and read[where["-inf"]] == finite.min()
    assert np.array_equal(read[np.isfinite(values)], finite)
    assert warnings == [f"flair image {path}: 2 NaN voxel(s) set to 0 and 2 infinite voxel(s) clipped to the "
                        f"image's finite range (+inf to {finite.max():g}, -inf to {finite.min():g})"]


def test_a_case_with_nan_voxels_is_segmented_with_the_warning_in_the_report(case, tmp_path):
    flair = read_image(case / f"{case.name}_flair.nii.gz")
    values, _ = _with_nonfinite(sitk.GetArrayFromImage(flair))
    damaged = sitk.GetImageFromArray(values)
    damaged.CopyInformation(flair)
    bad = write_image(damaged, flair, tmp_path / "flair.nii.gz")
    out = tmp_path / "out"
    run = _segment(_inputs(case, flair=bad), out)
    assert run.returncode == 0, run.stderr
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    expected = f"flair image {bad}: 2 NaN voxel(s) set to 0 and 2 infinite voxel(s) clipped"
    assert any(expected in w for w in warnings), warnings


def test_an_image_without_any_finite_voxel_is_refused(tmp_path):
    card = tiny_card()
    images = brats_images(brats_label())
    paths = {n: write_image(images[n], grid(), tmp_path / f"{n}.nii.gz") for n in card.modality_names}
    blank = write_image(np.full(SIZE, np.nan, np.float32), grid(), tmp_path / "nan.nii.gz")
    with pytest.raises(DataError) as error:
        load_case(card, {**paths, "flair": blank}, case_id="c1")
    expected = f"case c1: flair image {blank}: has no finite voxel (all {np.prod(SIZE)} are NaN or infinite)"
    assert str(error.value) == expected


def test_a_4d_stack_is_checked_per_channel_and_a_nan_label_is_refused(tmp_path):
    card = tiny_card()
    images = brats_images(brats_label())
    stack = np.stack([images[m] for m in card.modality_names])  # (C, X, Y, Z)
    stack[2, 5, 5, 5] = np.nan
    four_d = sitk.GetImageFromArray(np.ascontiguousarray(stack.transpose(0, 3, 2, 1)), isVector=False)
    path = tmp_path / "stack.nii.gz"
    sitk.WriteImage(four_d, str(path), True)
    channels = {m: i for i, m in enumerate(card.modality_names)}
    loaded = load_case(card, {m: path for m in card.modality_names}, channels=channels, case_id="c1")
    name = card.modality_names[2]
    assert loaded.warnings == [f"case c1: {name} image {path} channel 2: 1 NaN voxel(s) set to 0"]
    assert np.isfinite(loaded.image).all()

    label = brats_label().astype(np.float32)
    label[0, 0, 0] = np.nan
    seg = write_image(label, grid(), tmp_path / "seg.nii.gz")
    with pytest.raises(DataError, match=r"case c1: label map .*seg\.nii\.gz: has 1 NaN voxel"):
        load_case(card, {m: path for m in card.modality_names}, seg, channels=channels, case_id="c1")
