"""How much of each BraTS region survives a working grid: the real labels taken to a coarser
isotropic spacing and back (linear, threshold 0.5, as `ciml segment` brings probabilities back),
scored against themselves. The best Dice a model working on that grid could reach.

    python scripts/grid_ceiling.py REAL_DIR [--spacings 1.5 2.0 2.5] [--out FILE.json]

REAL_DIR: a folder of BraTS cases (`*_seg.nii.gz` in each case folder, labels 1/2/4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ciml.errors import CIMLError
from ciml.research.record import script_envelope, write_record

REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def round_trip(label: sitk.Image, spacing: float) -> dict[str, float]:
    """Per region, the Dice of the region against itself after a trip through ``spacing`` mm."""
    array = sitk.GetArrayFromImage(label)
    size = [int(round(n * s / spacing)) for n, s in zip(label.GetSize(), label.GetSpacing())]
    scores = {}
    for name, values in REGIONS.items():
        region = sitk.GetImageFromArray(np.isin(array, values).astype(np.float32))
        region.CopyInformation(label)
        coarse = sitk.Resample(region, size, sitk.Transform(), sitk.sitkLinear, label.GetOrigin(),
                               (spacing,) * 3, label.GetDirection())
        back = sitk.GetArrayFromImage(sitk.Resample(coarse, label, sitk.Transform(), sitk.sitkLinear)) > 0.5
        scores[name] = _dice(back, np.isin(array, values))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="REAL_DIR")
    parser.add_argument("--spacings", type=float, nargs="+", default=[1.5, 2.0, 2.5])
    parser.add_argument("--out", metavar="FILE.json")
    args = parser.parse_args(argv)
    labels = sorted(Path(args.data).glob("*/*_seg.nii.gz"))
    if not labels:
        print(f"grid_ceiling: no */*_seg.nii.gz under {args.data}", file=sys.stderr)
        return 2
    results = {"cases": len(labels), "spacings": {}}
    for spacing in args.spacings:
        rows = [round_trip(sitk.ReadImage(str(p)), spacing) for p in labels]
        results["spacings"][str(spacing)] = {
            "mean": {r: float(np.mean([row[r] for row in rows])) for r in REGIONS},
            "min": {r: float(np.min([row[r] for row in rows])) for r in REGIONS}}
        print(spacing, {r: round(v, 3) for r, v in results["spacings"][str(spacing)]["mean"].items()})
    record = script_envelope("grid-ceiling", results, "grid_ceiling.py", argv)
    try:
        write_record(record, args.out)
    except CIMLError as error:
        print(f"grid_ceiling: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
