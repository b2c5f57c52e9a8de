"""Synthetic sample data: a BraTS-like brain-tumour phantom and the `shapes` task.

Both write the BraTS 2020 layout (``DIR/<case>/<case>_<modality>.nii.gz`` and
``<case>_seg.nii.gz``) and are deterministic: a case depends only on ``(seed, index)``.

- ``brats``: t1, t1ce, t2, flair; labels 0/1/2/4 (:mod:`ciml.data.synthetic.brats`), in two
  variations: ``standard`` and ``shifted`` (head and scanner settings outside the standard ranges).
- ``glioma``: realistic gliomas on the MNI152 anatomy, for training on real scans
  (:mod:`ciml.data.synthetic.glioma`; needs nilearn).
- ``shapes``: shapes (primary), cue (complementary), echo (redundant); label 0/1
  (:mod:`ciml.data.synthetic.shapes`).

Imports numpy, SimpleITK and ``ciml.data``'s image writing; never torch.

Example::

    from ciml.data.synthetic import generate_case, write_cases
    case = generate_case("shapes", 0, seed=1)          # in memory
    folders = write_cases("brats", 4, "data/brats")    # on disk
    shifted = generate_case("brats", 0, variation="shifted")
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path

from ciml.data.synthetic import brats, glioma, shapes
from ciml.data.synthetic.brats import brats_case, variation_spec
from ciml.data.synthetic.common import Grid, SyntheticCase, write_case
from ciml.data.synthetic.shapes import cue_predictor_dice, primary_only_oracle_dice, shapes_case
from ciml.errors import CIMLError

# Kind -> (case generator, its modality names, its grid sizes).
GENERATORS: dict[str, Callable[..., SyntheticCase]] = {"brats": brats_case, "glioma": glioma.glioma_case,
                                                       "shapes": shapes_case}
MODALITIES: dict[str, tuple[str, ...]] = {"brats": brats.MODALITIES, "glioma": glioma.MODALITIES,
                                          "shapes": shapes.MODALITIES}
SIZES: dict[str, dict[str, Grid]] = {"brats": brats.SIZES, "glioma": glioma.SIZES, "shapes": shapes.SIZES}
KINDS = tuple(GENERATORS)
SIZE_NAMES = ("small", "full")
# Per kind, its variations (`shapes` has only `standard`).
VARIATIONS: dict[str, tuple[str, ...]] = {"brats": tuple(brats.VARIATIONS), "glioma": tuple(glioma.VARIATIONS),
                                          "shapes": ("standard",)}
VARIATION_NAMES = tuple(dict.fromkeys(v for names in VARIATIONS.values() for v in names))


def _check_kind(kind: str) -> None:
    if kind not in GENERATORS:
        raise CIMLError(f"unknown sample-data kind {kind!r} (known: {', '.join(KINDS)})")


def _check_variation(kind: str, variation: str) -> None:
    if variation not in VARIATIONS[kind]:
        raise CIMLError(f"variation must be one of {', '.join(VARIATIONS[kind])} for kind {kind}, "
                        f"got {variation!r}")


def generate_case(kind: str, index: int, seed: int = 0, size: str = "small",
                  variation: str = "standard") -> SyntheticCase:
    """Case ``index`` of task ``kind`` (``brats``, ``glioma`` or ``shapes``), in memory.

    ``variation``: one of :data:`VARIATIONS` of the kind. ``brats``: ``standard`` or ``shifted``
    (``brats.SHIFTED_BRAIN_PHANTOM``: head and scanner settings outside the standard ranges);
    ``glioma``: ``standard`` or one part of the generator taken away (``glioma.VARIATIONS``).

    Returns a :class:`SyntheticCase`: images (modality -> float32 ``(X, Y, Z)``), label
    (uint8 ``(X, Y, Z)``), spacing and origin in mm.
    """
    _check_kind(kind)
    _check_variation(kind, variation)
    if kind == "brats":
        return brats_case(index, seed=seed, size=size, spec=variation_spec(variation))
    if kind == "glioma":
        return glioma.glioma_case(index, seed=seed, size=size, spec=glioma.VARIATIONS[variation])
    return GENERATORS[kind](index, seed=seed, size=size)


def case_ids(kind: str, n_cases: int) -> list[str]:
    """The case ids (= folder names) of the first ``n_cases`` cases of ``kind``."""
    _check_kind(kind)
    prefix = {"brats": brats.CASE_PREFIX, "glioma": glioma.CASE_PREFIX, "shapes": shapes.CASE_PREFIX}[kind]
    return [f"{prefix}-{index:03d}" for index in range(n_cases)]


def write_cases(kind: str, n_cases: int, out_dir: str | Path, seed: int = 0,
                size: str = "small", on_case: Callable[[Path], None] | None = None,
                variation: str = "standard") -> list[Path]:
    """Generate ``n_cases`` cases of ``kind`` and write them under ``out_dir``.

    Every case folder is checked before anything is written: if one exists and is not
    empty, nothing is written and a :class:`~ciml.errors.CIMLError` names it.

    Args:
        kind: ``brats``, ``glioma`` or ``shapes``.
        n_cases: number of cases (>= 1); cases ``0 .. n_cases - 1``.
        out_dir: the dataset folder (created if needed).
        seed: run seed (>= 0).
        size: ``small`` or ``full``.
        on_case: called with each case folder once written (progress reporting).
        variation: ``standard`` or another of the kind's :data:`VARIATIONS`.

    Returns:
        The case folders, in order.
    """
    _check_kind(kind)
    if isinstance(n_cases, bool) or not isinstance(n_cases, numbers.Integral) or n_cases < 1:
        raise CIMLError(f"the number of cases must be a whole number >= 1, got {n_cases!r}")
    if size not in SIZE_NAMES:
        raise CIMLError(f"size must be one of {', '.join(SIZE_NAMES)}, got {size!r}")
    if int(seed) < 0:
        raise CIMLError(f"seed must be >= 0, got {seed}")
    _check_variation(kind, variation)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CIMLError(f"{out_dir} exists and is not a folder")
    taken = [name for name in case_ids(kind, n_cases)
             if (out_dir / name).exists()
             and (not (out_dir / name).is_dir() or any((out_dir / name).iterdir()))]
    if taken:
        raise CIMLError(f"{out_dir} already holds {', '.join(taken)}; nothing was written "
                        "(choose another folder, or remove those cases first)")
    folders = []
    for index in range(n_cases):
        folder = write_case(generate_case(kind, index, seed=seed, size=size, variation=variation), out_dir)
        folders.append(folder)
        if on_case is not None:
            on_case(folder)
    return folders


__all__ = [
    "GENERATORS", "KINDS", "MODALITIES", "SIZES", "SIZE_NAMES", "VARIATIONS", "VARIATION_NAMES", "Grid", "SyntheticCase",
    "brats_case", "case_ids", "cue_predictor_dice", "generate_case", "primary_only_oracle_dice",
    "shapes_case", "write_case", "write_cases",
]
