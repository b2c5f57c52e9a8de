"""Images: formats, geometry, resampling onto the reference grid, validation, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import SIZE, brats_images, brats_label, grid, rotation, tiny_card
from monai.transforms import NormalizeIntensity, ScaleIntensityRange

from ciml.config import preset
from ciml.data import (
    DataError,
    Geometry,
    load_case,
    read_array,
    read_image,
    write_dicom_series,
    write_image,
)
from ciml.data.normalize import MR_CLIP_PERCENTILE, normalize

OBLIQUE = grid(spacing=(0.9, 1.1, 2.5), origin=(10.0, -5.0, 3.0), direction=rotation(0.3, 0.2))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_file_formats_keep_voxels_and_geometry(tmp_path, suffix):
    values = np.random.default_rng(0).normal(0, 100, SIZE).astype(np.float32)
    path = write_image(values, OBLIQUE, tmp_path / f"image{suffix}")
    read, geometry = read_array(path)
    assert read.dtype == np.float32 and np.array_equal(read, values)
    assert geometry.same_grid(OBLIQUE), geometry.differences(OBLIQUE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"


def test_dicom_series_folder_keeps_voxels_and_geometry(tmp_path):
    values = np.random.default_rng(1).integers(-1000, 2000, SIZE).astype(np.int16)
    write_dicom_series(values, OBLIQUE, tmp_path / "series", modality="CT")
    assert len(list((tmp_path / "series").iterdir())) == SIZE[2]
    read, geometry = read_array(tmp_path / "series")
    assert np.array_equal(read, values)
    assert geometry.same_grid(OBLIQUE), geometry.differences(OBLIQUE)


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_image(np.zeros(SIZE), OBLIQUE, tmp_path / "out.nii.gz")
    with pytest.raises(Exception, match="already exists"):
        write_image(np.ones(SIZE), OBLIQUE, path)
    assert read_array(path)[0].max() == 0
    write_image(np.ones(SIZE), OBLIQUE, path, overwrite=True)
    assert read_array(path)[0].min() == 1


def test_write_takes_the_geometry_of_a_reference_image(tmp_path):
    reference = read_image(write_image(np.ones(SIZE), OBLIQUE, tmp_path / "ref.nrrd"))
    written = write_image(sitk.Image(list(SIZE), sitk.sitkUInt8), reference, tmp_path / "out.mha")
    assert Geometry.of(read_image(written, dims=None)).same_grid(OBLIQUE)


def _cube(geometry: Geometry, low_mm, high_mm, value: float = 100.0) -> np.ndarray:
    """An image that is ``value`` inside a physical box, 1 elsewhere (never constant)."""
    image = geometry.blank()
    points = np.array([[image.TransformIndexToPhysicalPoint(tuple(map(int, i)))
                        for i in np.ndindex(*geometry.size)]]).reshape(*geometry.size, 3)
    inside = np.all((points >= low_mm) & (points <= high_mm), axis=-1)
    return np.where(inside, value, 1.0).astype(np.float32)


def test_auxiliary_on_another_grid_lands_at_the_same_physical_place(tmp_path):
    card = tiny_card()
    reference = grid(origin=(0, 0, 0))
    # the auxiliary: coarser, shifted, rotated 90 degrees about z, covering the reference.
    auxiliary = grid(size=(16, 14, 10), spacing=(2.0, 2.0, 2.0), origin=(22.0, -2.0, -1.0),
                     direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    low, high = (6.0, 5.0, 4.0), (13.0, 12.0, 11.0)
    paths = {}
    for name in card.modality_names:
        geometry = auxiliary if name == "flair" else reference
        paths[name] = write_image(_cube(geometry, low, high), geometry, tmp_path / f"{name}.nii.gz")
    case = load_case(card, paths)
    assert case.grid.same_grid(reference) and case.reference.same_grid(reference)
    assert case.image.shape == (4, *SIZE)
    flair, t1ce = case.image[card.modality_index("flair")], case.image[card.modality_index("t1ce")]
    bright_ref, bright_aux = t1ce > t1ce.mean(), flair > flair.mean()
    dice = 2 * (bright_ref & bright_aux).sum() / (bright_ref.sum() + bright_aux.sum())
    assert dice > 0.8
    assert any("flair" in w and "resampled" in w for w in case.warnings)
    assert not any("t1ce image" in w for w in case.warnings)


def test_images_that_do_not_overlap_are_refused(tmp_path):
    card = tiny_card()
    paths = {name: write_image(brats_images(brats_label())[name],
                               grid(origin=(500.0, 0, 0)) if name == "t2" else grid(),
                               tmp_path / f"{name}.nii.gz") for name in card.modality_names}
    with pytest.raises(DataError, match=r"t2 image .*t2\.nii\.gz: does not overlap the reference t1ce"):
        load_case(card, paths)


def test_working_spacing_and_back_to_the_reference_grid(tmp_path):
    card = tiny_card(spacing=[2.0, 2.0, 2.0])
    label = brats_label()
    images = brats_images(label)
    paths = {n: write_image(images[n], OBLIQUE, tmp_path / f"{n}.nii.gz") for n in card.modality_names}
    case = load_case(card, paths, write_image(label, OBLIQUE, tmp_path / "seg.nii.gz"))
    assert case.grid.spacing == (2.0, 2.0, 2.0) and case.image.shape[1:] == case.grid.size
    assert case.regions.shape == (3, *case.grid.size)
    lo, hi = OBLIQUE.bounds()
    assert np.allclose(case.grid.bounds()[0], lo, atol=2.0)
    assert np.allclose(case.grid.bounds()[1], hi, atol=2.0)
    back = case.to_reference(case.regions)
    assert back.shape == (3, *SIZE)
    whole = label > 0
    dice = 2 * ((back[0] > 0.5) & whole).sum() / ((back[0] > 0.5).sum() + whole.sum())
    assert dice > 0.8
    painted = case.label_map(case.regions, card)
    assert painted.shape == SIZE and set(np.unique(painted).tolist()) <= {0, 1, 2, 4}
    assert (painted == label).mean() > 0.95


# NaN and infinite voxels are now replaced with a warning (Testing/test_bad_images.py); all-NaN is refused there.
@pytest.mark.parametrize("kind", ["2D", "4D", "vector", "constant", "missing", "garbage"])
def test_each_bad_image_gets_its_message_naming_the_file(tmp_path, kind):
    card = tiny_card()
    images = brats_images(brats_label())
    paths = {n: write_image(images[n], grid(), tmp_path / f"{n}.nii.gz") for n in card.modality_names}
    bad = tmp_path / "bad_flair.nrrd"
    if kind == "2D":
        sitk.WriteImage(sitk.Image([24, 20], sitk.sitkFloat32) + 1, str(bad))
    elif kind == "4D":
        four_d = sitk.GetImageFromArray(np.ones((3, 16, 20, 24), np.float32), isVector=False)
        sitk.WriteImage(four_d, str(bad))
    elif kind == "vector":
        sitk.WriteImage(sitk.Image([24, 20, 16], sitk.sitkVectorFloat32, 3), str(bad))
    elif kind == "constant":
        write_image(np.full(SIZE, 7.0), grid(), bad)
    elif kind == "garbage":
        bad.write_bytes(b"this is not an image")
    expected = {"2D": "is 2D", "4D": "is 4D", "vector": "3 components per voxel",
                "constant": "is constant (every voxel is 7)",
                "missing": "file not found", "garbage": "cannot be read as an image"}[kind]
    with pytest.raises(DataError) as error:
        load_case(card, {**paths, "flair": bad}, case_id="c1")
    message = str(error.value)
    assert "case c1: flair image" in message and str(bad) in message and expected in message
    assert "\n" not in message


def test_single_slice_counts_as_2d(tmp_path):
    path = write_image(np.ones((24, 20, 1)), grid(size=(24, 20, 1)), tmp_path / "slice.nii.gz")
    with pytest.raises(DataError, match=r"slice\.nii\.gz: is 2D \(size 24x20x1\)"):
        read_image(path)


def test_label_values_the_card_does_not_know_are_refused(tmp_path):
    card = tiny_card()
    images = brats_images(brats_label())
    paths = {n: write_image(images[n], grid(), tmp_path / f"{n}.nii.gz") for n in card.modality_names}
    valid = write_image(brats_label(), grid(), tmp_path / "ok.nii.gz")
    assert load_case(card, paths, valid).regions.any()
    label = brats_label()
    label[label == 4] = 3
    seg = write_image(label, grid(), tmp_path / "seg.nii.gz")
    with pytest.raises(DataError) as error:
        load_case(card, paths, seg)
    assert str(seg) in str(error.value)
    expected = "label value(s) 3 that the model card 'brats' does not know (known: 0, 1, 2, 4)"
    assert expected in str(error.value)


def test_missing_modality_is_refused_or_zero_filled(tmp_path):
    card = tiny_card()
    images = brats_images(brats_label())
    paths = {n: write_image(images[n], grid(), tmp_path / f"{n}.nii.gz") for n in ("t1", "t1ce", "t2")}
    with pytest.raises(DataError, match="modality flair: no image given"):
        load_case(card, paths)
    case = load_case(card, paths, allow_missing=True)
    assert case.present == (True, True, True, False)
    assert not case.image[3].any() and any("flair: missing" in w for w in case.warnings)


def test_normalisations_agree_with_monai():
    mr, (pet, ct) = tiny_card().modalities[0], preset("autopet").modalities
    values = np.random.default_rng(2).normal(50, 400, SIZE).astype(np.float32)
    values[:4] = 0
    nonzero = values != 0
    ceiling = np.percentile(values[nonzero], MR_CLIP_PERCENTILE)
    expected = {
        # MR: clipped at the non-zero voxels' percentile, then MONAI's z-score.
        mr: NormalizeIntensity(nonzero=True)(np.where(nonzero, np.minimum(values, ceiling), values)),
        ct: ScaleIntensityRange(*ct.window, 0.0, 1.0, clip=True)(values),
        pet: ScaleIntensityRange(*pet.window, 0.0, 1.0, clip=True)(values),
    }
    for modality, reference in expected.items():
        np.testing.assert_allclose(normalize(values, modality), np.asarray(reference), atol=1e-5)
    whole = normalize(values, type(mr)(name="x", normalization="zscore"))
    assert abs(whole.mean()) < 1e-5 and abs(whole.std() - 1) < 1e-4
