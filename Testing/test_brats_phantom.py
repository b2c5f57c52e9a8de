"""The synthetic BraTS phantom: the structures that only an auxiliary sequence shows, the
primary-only Dice ceiling they imply, and the per-case head and scanner variation."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from ciml.data.synthetic import brats
from ciml.data.synthetic.brats import (
    BRAIN_PHANTOM,
    SHIFTED_BRAIN_PHANTOM,
    SHIFTED_FIELDS,
    brats_case,
    measure_primary_only_ceiling,
    primary_only_ceiling_table,
)
from ciml.data.synthetic.brats_tumour import (
    REGION,
    REGION_NAMES,
    TARGET_LABELS,
    TUMOUR,
    hidden_from_primary,
    labels_of,
    primary_only_ceiling,
)
from ciml.data.synthetic.common import SyntheticCase

N_CASES = 12
# Each structure and the target whose Dice it moves.
STRUCTURES = {"faint_edema": "WT", "satellite": "WT", "flair_artefact": "WT", "non_enhancing": "TC",
              "cyst": "TC", "haemorrhage": "ET"}
SHARES = ("faint_edema_share", "foci_share", "non_enhancing_share", "cyst_share", "haemorrhage_share")
MIN_VOXELS = 10      # a structure present in a small case is not a voxel or two ...
MIN_SHARE = 0.05     # ... and typically at least this share of its target's volume


@pytest.fixture(scope="module")
def cases() -> list[SyntheticCase]:
    return [brats_case(index, seed=0) for index in range(N_CASES)]


def _counts(case: SyntheticCase) -> dict[str, int]:
    counts = np.bincount(case.extras["regions"].ravel(), minlength=len(REGION_NAMES))
    return dict(zip(REGION_NAMES, counts.tolist()))


def _mask(case: SyntheticCase, name: str) -> np.ndarray:
    return case.extras["regions"] == REGION[name]


def _mean(case: SyntheticCase, modality: str, mask: np.ndarray) -> float:
    return float(case.images[modality][mask].mean())


def _without(index: int, **tumour) -> SyntheticCase:
    """Case ``index`` again, with the tumour spec changed (e.g. a structure's share set to 0)."""
    return brats_case(index, seed=0, spec=replace(BRAIN_PHANTOM, tumour=replace(TUMOUR, **tumour)))


def _cases_with(cases, *names, least=MIN_VOXELS):
    chosen = [(i, c) for i, c in enumerate(cases) if all(_counts(c)[n] >= least for n in names)]
    assert len(chosen) >= 2, names
    return chosen


@pytest.mark.parametrize("name", STRUCTURES)
def test_each_structure_is_in_some_cases_only_and_large_enough_to_matter(cases, name):
    counts = [_counts(c)[name] for c in cases]
    assert 2 <= sum(n > 0 for n in counts) <= N_CASES - 1, counts
    shares = [n / np.isin(c.label, TARGET_LABELS[STRUCTURES[name]]).sum() for c, n in zip(cases, counts) if n]
    assert min(n for n in counts if n) >= MIN_VOXELS and np.median(shares) >= MIN_SHARE, (counts, shares)


def test_faint_edema_is_normal_in_flair_and_bright_in_t2(cases):
    for index, case in _cases_with(cases, "faint_edema"):
        plain = _without(index, faint_edema_share=0.0)
        faint = _mask(case, "faint_edema")
        # FLAIR (and T1, T1ce) show the healthy tissue exactly; only T2 shows the edema.
        for modality in ("flair", "t1", "t1ce"):
            np.testing.assert_array_equal(case.images[modality], plain.images[modality])
        assert _mean(case, "t2", faint) > 1.5 * _mean(plain, "t2", faint)
        assert _mean(case, "t2", faint) > 0.85 * _mean(case, "t2", _mask(case, "edema"))


def test_flair_artefacts_look_like_satellites_in_flair_only(cases):
    for index, case in _cases_with(cases, "flair_artefact"):
        plain = _without(index, foci_share=0.0)
        artefact = _mask(case, "flair_artefact")
        for modality in ("t1", "t1ce", "t2"):  # normal: the same voxels as without it
            np.testing.assert_array_equal(case.images[modality][artefact], plain.images[modality][artefact])
        assert _mean(case, "flair", artefact) > 1.6 * _mean(plain, "flair", artefact)
    for index, case in _cases_with(cases, "flair_artefact", "satellite"):
        artefact, satellite = _mask(case, "flair_artefact"), _mask(case, "satellite")
        assert _mean(case, "flair", artefact) == pytest.approx(_mean(case, "flair", satellite), rel=0.15)
        assert _mean(case, "t2", satellite) > 1.4 * _mean(case, "t2", artefact)


def test_cyst_looks_like_necrosis_in_t1ce_only(cases):
    for _, case in _cases_with(cases, "cyst", "necrosis", least=20):
        cyst, necrosis = _mask(case, "cyst"), _mask(case, "necrosis")
        assert _mean(case, "t1ce", cyst) == pytest.approx(_mean(case, "t1ce", necrosis), rel=0.2)
        assert _mean(case, "t2", cyst) > 1.15 * _mean(case, "t2", necrosis)      # brightest
        assert _mean(case, "flair", cyst) < 0.4 * _mean(case, "flair", necrosis)  # suppressed

        def spread(region):  # relative spread in T2: the fluid is homogeneous
            return case.images["t2"][region].std() / _mean(case, "t2", region)
        assert spread(cyst) < spread(necrosis)


def test_non_enhancing_core_is_edema_in_t1ce_and_darker_in_t2(cases):
    for index, case in _cases_with(cases, "non_enhancing"):
        plain = _without(index, non_enhancing_share=0.0)  # edema there instead
        core = _mask(case, "non_enhancing")
        assert (plain.extras["regions"][core] == REGION["edema"]).all()
        np.testing.assert_array_equal(case.images["t1ce"], plain.images["t1ce"])
        assert _mean(case, "t2", core) < 0.85 * _mean(plain, "t2", core)


def test_haemorrhage_is_bright_in_t1_and_t1ce_enhancement_in_t1ce_only(cases):
    for index, case in _cases_with(cases, "haemorrhage"):
        plain = _without(index, haemorrhage_share=0.0)
        blood = _mask(case, "haemorrhage")
        was_enhancing = blood & (plain.extras["regions"] == REGION["enhancing"])
        assert was_enhancing.sum() >= MIN_VOXELS
        # T1ce shows the blood exactly as the enhancement it replaced; T1 does not.
        np.testing.assert_array_equal(case.images["t1ce"][was_enhancing], plain.images["t1ce"][was_enhancing])
        assert _mean(case, "t1", was_enhancing) > 1.6 * _mean(plain, "t1", was_enhancing)
        white = (case.extras["tissue"]["white"] > 0.9) & (case.extras["regions"] == 0)

        def relative(modality, region):  # to white matter in the same sequence (its own gain)
            return _mean(case, modality, region) / _mean(case, modality, white)
        assert relative("t1", blood) > 1.15 and relative("t1ce", blood) > 1.15
        enhancing = _mask(case, "enhancing")
        assert relative("t1ce", enhancing) > 1.15 and relative("t1", enhancing) < 0.9
        assert (case.label[blood] == 1).all() and (case.label[enhancing] == 4).all()


def _tiny_case(names: list[str]) -> SyntheticCase:
    region = np.array([REGION[n] for n in names], dtype=np.uint8).reshape(-1, 1, 1)
    return SyntheticCase("tiny", {}, labels_of(region), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                         {"hidden_from_primary": hidden_from_primary(region)})


def test_ceiling_of_a_hand_built_case():
    case = _tiny_case(["edema"] * 6 + ["faint_edema"] * 2 + ["satellite"] * 3 + ["flair_artefact"] * 2
                      + ["healthy"] + ["enhancing"] * 2 + ["necrosis", "cyst", "non_enhancing", "haemorrhage"])
    # WT (16 voxels: all but the artefacts, the cyst and the healthy one): the 2 faint ones are
    # missed; the 5 foci (3 satellites) taken whole: 2*14 / (16 + 16) beats 2*11 / (11 + 16).
    # TC (5: enhancing 2, necrosis, non-enhancing, haemorrhage): the non-enhancing one missed;
    # necrosis + cyst taken: 2*4 / (5 + 5) beats left out: 2*3 / (3 + 5).
    # ET (2): enhancing + haemorrhage taken whole: 2*2 / (3 + 2); left out it would be 0.
    assert primary_only_ceiling(case) == pytest.approx({"WT": 28 / 32, "TC": 0.8, "ET": 0.8})


def test_ceiling_chooses_the_best_combination_of_groups():
    truth = np.zeros(20, dtype=bool)
    truth[:10] = True
    group_a, group_b = np.zeros(20, bool), np.zeros(20, bool)
    group_a[6:9] = True                          # 3 target voxels: take it
    group_b[9:14] = True                         # 1 target, 4 not: leave it
    hidden = {"unseen": np.zeros(20, bool), "lookalikes": [group_a, group_b]}
    case = SyntheticCase("tiny", {}, truth.astype(np.uint8) * 4, (1.0,) * 3, (0.0,) * 3,
                         {"hidden_from_primary": {"ET": hidden}})
    assert primary_only_ceiling(case) == pytest.approx({"ET": 2 * 9 / (9 + 10)})


def test_ceiling_is_below_one_with_hidden_structures_and_one_without(cases):
    ceilings = [primary_only_ceiling(c) for c in cases]
    for target in ("WT", "TC", "ET"):
        values = [c[target] for c in ceilings]
        assert min(values) < 0.9 and np.mean(values) < 0.97 and max(values) <= 1.0, (target, values)
    plain = dict.fromkeys(SHARES, 0.0)
    for index in range(2):
        case = _without(index, **plain)
        assert not any(_counts(case)[n] for n in STRUCTURES)
        assert primary_only_ceiling(case) == {"WT": 1.0, "TC": 1.0, "ET": 1.0}


def test_ceiling_measure_and_table():
    stats = measure_primary_only_ceiling(3, seed=0)
    assert set(stats) == {"WT", "TC", "ET"}
    for s in stats.values():
        assert 0 < s["min"] <= s["mean"] <= 1 and s["sd"] >= 0
    table = primary_only_ceiling_table(2)
    assert table.count("\n") == 4 and "| WT | flair |" in table and "| ET | t1ce |" in table


def _within(value: float, low_high: tuple[float, float]) -> bool:
    return low_high[0] - 1e-9 <= value <= low_high[1] + 1e-9


def test_cases_vary_in_head_and_scanner_within_the_ranges(cases):
    spec = BRAIN_PHANTOM
    settings = [c.extras["acquisition"] for c in cases]
    for case, s in zip(cases, settings):
        assert _within(s["zoom"], spec.voxel_zoom)
        assert case.spacing == pytest.approx(tuple(2.5 * s["zoom"] for _ in range(3)))
        assert case.images["t1"].shape == (96, 96, 64)
        assert all(_within(abs(a), spec.rotation_deg) for a in s["rotation_deg"])
        scale = np.array(s["brain_semi_axes_mm"]) / np.array(spec.brain_semi_axes_mm)
        assert all(_within(x, spec.brain_scale) for x in scale)
        assert all(_within(g, spec.gain) for g in s["gain"].values())
        assert _within(s["intensity_scale"], spec.intensity_scale)
        assert _within(s["bias_amplitude"], spec.bias_amplitude)
        assert _within(s["noise_sigma"], spec.noise_sigma)
    for key in ("zoom", "rotation_deg", "brain_semi_axes_mm", "intensity_scale", "bias_amplitude", "noise_sigma"):
        assert len({repr(s[key]) for s in settings}) == N_CASES, key
    # The intensity scale really moves the images (a factor of ~10 between cases).
    levels = [np.median(c.images["t1"][c.extras["brain"]]) / s["gain"]["t1"] for c, s in zip(cases, settings)]
    assert max(levels) > 3 * min(levels)


def _touches_the_border(mask: np.ndarray) -> bool:
    return any(np.take(mask, end, axis=axis).any() for axis in range(3) for end in (0, -1))


def test_the_brain_fits_and_is_rotated(cases):
    shifted = [brats_case(index, seed=0, spec=SHIFTED_BRAIN_PHANTOM) for index in range(3)]
    for case in cases + shifted:
        assert not _touches_the_border(case.extras["brain"])
    # The brain lies along the rotated ellipsoid, not the unrotated one.
    for case in shifted:
        s = case.extras["acquisition"]
        grid = brats.Grid(case.label.shape, case.spacing)
        axes = np.array(s["brain_semi_axes_mm"])

        def ellipsoid(rotation):
            frame = brats.rotated_offsets(grid, np.zeros(3), rotation)
            return sum((c / a) ** 2 for c, a in zip(frame, axes)) < 1

        def overlap(a, b):
            return 2 * (a & b).sum() / (a.sum() + b.sum())
        brain = case.extras["brain"]
        rotated = overlap(brain, ellipsoid(brats.axis_rotation(np.array(s["rotation_deg"]))))
        assert rotated > 0.92 and rotated > overlap(brain, ellipsoid(np.eye(3))) + 0.03


def test_the_shifted_spec_lies_outside_the_standard_ranges():
    for name in SHIFTED_FIELDS:
        (low, high), (s_low, s_high) = getattr(BRAIN_PHANTOM, name), getattr(SHIFTED_BRAIN_PHANTOM, name)
        assert s_low > high or s_high < low, name
    others = [f.name for f in fields(BRAIN_PHANTOM) if f.name not in SHIFTED_FIELDS]
    assert all(getattr(BRAIN_PHANTOM, n) == getattr(SHIFTED_BRAIN_PHANTOM, n) for n in others)
    case = brats_case(0, seed=0, spec=SHIFTED_BRAIN_PHANTOM)
    s = case.extras["acquisition"]
    assert s["zoom"] > BRAIN_PHANTOM.voxel_zoom[1]
    assert min(abs(a) for a in s["rotation_deg"]) > BRAIN_PHANTOM.rotation_deg[1]
    assert s["noise_sigma"] > BRAIN_PHANTOM.noise_sigma[1]
    assert s["bias_amplitude"] > BRAIN_PHANTOM.bias_amplitude[1]
    assert s["intensity_scale"] > BRAIN_PHANTOM.intensity_scale[1]
    assert set(np.unique(case.label)) <= {0, 1, 2, 4}
