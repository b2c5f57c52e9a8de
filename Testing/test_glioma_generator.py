"""The realistic glioma generator's parts on small volumes: the template anatomy and its
deformation, the tumour's mass effect and geometry, the contrast draws, and the labels against
the images."""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from ciml.cli.main import main
from ciml.data.synthetic import generate_case
from ciml.data.synthetic.common import Grid, case_rng
from ciml.data.synthetic.glioma import SIZES, glioma_case
from ciml.data.synthetic.glioma import anatomy as anatomy_module
from ciml.data.synthetic.glioma.anatomy import Anatomy, deformed_anatomy, template
from ciml.data.synthetic.glioma.appearance import (
    MIN_ENHANCEMENT_Z,
    clean_images,
    draw_tissue_means,
    draw_tumour_z,
    edema_fade,
)
from ciml.data.synthetic.glioma.spec import (
    GLIOMA,
    TEXTBOOK_MEANS,
    TUMOUR_CLASSES,
    TUMOUR_Z,
    VARIATIONS,
    AnatomySpec,
    AppearanceSpec,
    TumourSpec,
)
from ciml.data.synthetic.glioma.tumour import CLASS_CODE, Focus, grow, labels_of, paint_focus, push
from ciml.errors import CIMLError

SMALL = SIZES["small"]
TISSUES = ("csf", "grey", "white")


def _shares(tissue: dict[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    total = float(brain.sum())
    return np.array([float(tissue[t][brain].sum()) / total for t in TISSUES])


def test_template_tissues_partition_its_brain():
    maps, origin = template()
    brain = maps["brain"] > 0
    total = maps["csf"] + maps["grey"] + maps["white"]
    assert np.allclose(total[brain], 1.0, atol=1e-5)  # CSF is the brain's remainder
    assert float(total[~brain].max()) == 0.0
    extent = np.ptp(np.argwhere(brain), axis=0)  # mm at 1 mm: a human brain, not a stray blob
    assert ((extent > 130) & (extent < 200)).all(), extent
    assert np.allclose(origin + (np.argwhere(brain).min(0) + np.argwhere(brain).max(0)) / 2, 0.0)


def test_deformed_anatomy_keeps_the_tissue_shares_and_size():
    maps, _ = template()
    reference = _shares({t: maps[t] for t in TISSUES}, maps["brain"] > 0)
    volumes, masks = [], []
    spec = AnatomySpec()
    for index in range(4):
        anatomy, settings = deformed_anatomy(case_rng(3, index), SMALL, spec)
        shares = _shares(anatomy.tissue, anatomy.brain)
        assert np.abs(shares - reference).max() < 0.05, (shares, reference)
        expected = float((maps["brain"] > 0).sum()) * float(np.prod(settings["scale"]))
        volumes.append(float(anatomy.brain.sum()) * np.prod(SMALL.spacing) / expected)
        masks.append(anatomy.brain)
    assert all(0.9 < v < 1.1 for v in volumes), volumes  # the volume follows the drawn scale
    overlap = 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum())
    assert overlap < 0.97  # two cases are two different brains


def test_mass_effect_pushes_the_anatomy_away_from_the_seed():
    grid = Grid((40, 40, 40), (1.0, 1.0, 1.0))
    x = np.broadcast_to(grid.axes_mm()[0], grid.shape).astype(np.float32)
    pushed = push({"x": x}, grid, np.zeros(3), amplitude_mm=5.0, reach_mm=6.0)["x"]
    row = pushed[:, 20, 20] - x[:, 20, 20]  # along the x axis through (nearly) the centre
    right, left = x[:, 20, 20] > 2, x[:, 20, 20] < -2
    assert (row[right & (x[:, 20, 20] < 9)] < -1.0).all()  # content from nearer the seed
    assert (row[left & (x[:, 20, 20] > -9)] > 1.0).all()
    assert np.abs(row[np.abs(x[:, 20, 20]) > 19]).max() < 0.1  # far away: untouched
    steps = np.diff(pushed[:, 20, 20])
    assert (steps >= 0).all()  # the warp does not fold ...
    assert (steps[np.abs(x[1:, 20, 20]) > 6] > 0).all()  # ... and squeezes only at the seed

    # In a case: the same draws with and without the push differ only around the seed.
    standard = glioma_case(4, seed=1)
    still = generate_case("glioma", 4, seed=1, variation="no-mass-effect")
    focus = standard.extras["settings"]["tumour"]["foci"][0]
    reach = standard.extras["settings"]["tumour"]["mass_effect_reach_mm"]
    changed = np.abs(standard.extras["tissue"]["white"] - still.extras["tissue"]["white"]) > 0.05
    assert changed.sum() > 100
    distance = np.sqrt(sum((a - c) ** 2 for a, c in zip(SMALL.axes_mm(), focus["seed_mm"])))
    assert not (changed & (distance > 4 * reach)).any()


def test_normal_contrast_follows_the_textbook_order_unless_randomised():
    spec = AppearanceSpec(random_contrast_share=0.0)
    for i in range(50):
        means = draw_tissue_means(np.random.default_rng(i), spec)
        for modality, tissues in means.items():
            for tissue, value in tissues.items():
                low, high = TEXTBOOK_MEANS[modality][tissue]
                assert low <= value <= high
        assert means["t1"]["white"] > means["t1"]["grey"] > means["t1"]["csf"]
        assert means["t2"]["csf"] > means["t2"]["grey"] > means["t2"]["white"]
        assert means["flair"]["grey"] >= means["flair"]["white"] > means["flair"]["csf"]
    shuffled = AppearanceSpec(random_contrast_share=1.0)
    orders = {tuple(np.argsort([draw_tissue_means(np.random.default_rng(i), shuffled)["t1"][t] for t in TISSUES]))
              for i in range(50)}
    assert len(orders) > 3  # random contrast breaks the order


def test_tumour_contrast_stays_within_the_measured_ranges():
    for i in range(200):
        z = draw_tumour_z(np.random.default_rng(i))
        for tumour_class in TUMOUR_CLASSES:
            for modality, (low, high) in TUMOUR_Z[tumour_class].items():
                value = z[tumour_class][modality]
                if tumour_class == "enhancing" and modality == "t1ce":
                    assert value >= z["enhancing"]["t1"] + MIN_ENHANCEMENT_Z - 1e-9
                    assert value <= max(high, TUMOUR_Z["enhancing"]["t1"][1] + MIN_ENHANCEMENT_Z)
                else:
                    assert low <= value <= high


def test_each_tumour_class_shows_its_drawn_contrast_in_the_images():
    """Inside each class (away from its edges) the sequence's median sits at the drawn z of the
    normal brain, within the texture's spread."""
    rng = case_rng(0, 7)
    anatomy, _ = deformed_anatomy(rng, SMALL, GLIOMA.anatomy)
    spec = replace(GLIOMA.tumour, tumour_free_share=0.0, non_enhancing_share=0.0, whole_volume_ml=(150.0, 200.0),
                   core_share=(0.5, 0.6), rim_mm=(5.0, 6.0, 7.0), partial_rim_share=0.0)
    anatomy, classes, _ = grow(rng, SMALL, anatomy, spec)
    images, contrast = clean_images(rng, SMALL, anatomy, classes, replace(GLIOMA.appearance, cortex_flair_share=0.0,
                                                                          dura_share=0.0))
    normal = anatomy.brain & (classes == 0)
    checked = 0
    for tumour_class in TUMOUR_CLASSES:
        inside = ndimage.binary_erosion(classes == CLASS_CODE[tumour_class], iterations=1)
        if inside.sum() < 20:
            continue
        for modality, image in images.items():
            median, sd = float(np.median(image[normal])), float(image[normal].std())
            z = (float(np.median(image[inside])) - median) / sd
            drawn = contrast["tumour_z"][tumour_class][modality]
            assert abs(z - drawn) < 0.6, (tumour_class, modality, z, drawn)
            checked += 1
    assert checked >= 8


def test_labels_match_the_regions_that_make_them():
    spec = GLIOMA.tumour
    for index in range(3):
        case = glioma_case(index, seed=2)
        label, brain, white = case.label, case.extras["brain"], case.extras["tissue"]["white"]
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        assert not label[~brain].any()  # nothing outside the skull strip
        core = np.isin(label, (1, 4))
        if not core.any():
            continue
        # Enhancing tumour is the core's shell: never deeper than the thickest rim (plus a voxel).
        depth = ndimage.distance_transform_edt(core, sampling=SMALL.spacing)
        assert depth[label == 4].max(initial=0) <= spec.rim_mm[2] + max(SMALL.spacing)
        # Edema lies in white matter or next to the core.
        near = ndimage.distance_transform_edt(~core, sampling=SMALL.spacing) <= spec.edema_near_core_mm
        edema = label == 2
        assert ((white > spec.edema_needs_white) | near)[edema].all()
        # Every edema component touches the core of its focus.
        components, count = ndimage.label(edema | core)
        assert all(core[components == k].any() for k in range(1, count + 1))


def test_lower_grade_tumours_have_a_core_without_enhancement():
    rng = case_rng(0, 3)
    anatomy, _ = deformed_anatomy(rng, SMALL, GLIOMA.anatomy)
    seed = np.array([20.0, 0.0, 10.0])
    classes = np.zeros(SMALL.shape, np.uint8)
    paint_focus(rng, SMALL, anatomy, Focus(seed, 30.0, 15.0), replace(GLIOMA.tumour, non_enhancing_share=1.0), classes)
    assert (classes == CLASS_CODE["solid"]).sum() + (classes == CLASS_CODE["fluid"]).sum() > 50
    assert not (classes == CLASS_CODE["enhancing"]).any()
    anatomy2, classes2, settings = grow(case_rng(0, 3), SMALL, Anatomy(anatomy.tissue, anatomy.brain),
                                        replace(GLIOMA.tumour, tumour_free_share=1.0))
    assert not classes2.any() and settings["foci"] == []


def test_cases_are_reproducible_and_scanner_ranges_hold():
    a, b = glioma_case(5, seed=3), glioma_case(5, seed=3)
    for modality in a.images:
        assert np.array_equal(a.images[modality], b.images[modality])
        assert a.images[modality].dtype == np.float32 and a.images[modality].min() >= 0
        assert not a.images[modality][~a.extras["brain"]].any()
    scanner, ranges = a.extras["settings"]["scanner"], GLIOMA.appearance
    assert ranges.intensity_scale[0] <= scanner["intensity_scale"] <= ranges.intensity_scale[1]
    for modality in a.images:
        low, high = ranges.slice_mm
        assert low <= scanner[modality].get("slice_mm", low) <= high


def test_missing_nilearn_is_one_clear_message(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(anatomy_module.importlib.metadata, "distribution", absent)
    template.cache_clear()
    try:
        with pytest.raises(CIMLError, match="pip install nilearn"):
            template()
    finally:
        monkeypatch.undo()
        template.cache_clear()


def test_cli_writes_glioma_cases(tmp_path, capsys):
    out = tmp_path / "glioma"
    assert main(["sample-data", "--kind", "glioma", "--cases", "1", "--out", str(out)]) == 0
    files = sorted(p.name for p in (out / "Glioma-sample-000").iterdir())
    assert files == [f"Glioma-sample-000_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    assert "1 glioma case(s)" in capsys.readouterr().err


def test_tumour_spec_ranges_are_ordered():
    for spec in (TumourSpec(), AppearanceSpec(), AnatomySpec()):
        for name, value in vars(spec).items():
            if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                assert value[0] <= value[1], name


def test_brats_volume_variations_grow_larger_tumours_with_thicker_rims():
    """The same draws under BraTS-sized ranges give larger whole tumours, and the thick-rim
    variation a larger enhancing share of the core, as the real cases show (docs/real-scans.md)."""
    standard, volumes, rims = (VARIATIONS[v].tumour for v in ("standard", "brats-volumes", "brats-volumes-thick-rims"))
    totals = {name: np.zeros(3) for name in ("standard", "volumes", "rims")}
    for index in range(3):
        anatomy, _ = deformed_anatomy(case_rng(4, index), SMALL, GLIOMA.anatomy)
        for name, spec in (("standard", standard), ("volumes", volumes), ("rims", rims)):
            spec = replace(spec, tumour_free_share=0.0, multifocal_share=0.0)
            _, classes, _ = grow(case_rng(5, index), SMALL, anatomy, spec)
            labels = labels_of(classes)
            totals[name] += [(labels > 0).sum(), np.isin(labels, (1, 4)).sum(), (labels == 4).sum()]
    assert totals["volumes"][0] > 1.3 * totals["standard"][0]
    et_share = {name: t[2] / t[1] for name, t in totals.items()}
    assert et_share["rims"] > 1.2 * et_share["volumes"]


def test_edema_fades_towards_its_outer_edge_without_changing_other_draws():
    classes = np.zeros(SMALL.shape, np.uint8)
    centre = np.array(SMALL.shape) // 2
    distance = np.sqrt(sum((np.indices(SMALL.shape)[a] - centre[a]) ** 2 for a in range(3))) * SMALL.spacing[0]
    classes[distance < 30] = CLASS_CODE["edema"]
    classes[distance < 10] = CLASS_CODE["solid"]
    spec = VARIATIONS["brats-volumes-faded-edema"].appearance
    rng = case_rng(0, 0)
    share, drawn = edema_fade(rng, SMALL, classes, spec)
    assert rng.uniform() == case_rng(0, 0).uniform()  # the case's own stream is untouched
    reach, floor = drawn["edema_fade_mm"], drawn["edema_fade_floor"]
    assert spec.edema_fade_mm[0] <= reach <= spec.edema_fade_mm[1]
    edema = classes == CLASS_CODE["edema"]
    edge = edema & ndimage.binary_dilation(classes == CLASS_CODE["healthy"])  # a face away from the brain
    assert np.allclose(share[edge], floor, atol=1.01 * (1 - floor) * SMALL.spacing[0] / reach)  # one voxel in
    assert (share[edema & (distance < 30 - reach - SMALL.spacing[0])] == 1).all()  # deep edema keeps its contrast
    rings = [share[edema & (abs(distance - r) < 1.5)].mean() for r in (28, 24, 20)]
    assert rings[0] < rings[1] <= rings[2] <= 1
    assert edema_fade(case_rng(0, 0), SMALL, classes, VARIATIONS["brats-volumes"].appearance) == (None, {})
