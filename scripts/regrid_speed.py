"""Outputs from the working grid back onto the reference grid: SimpleITK against one axis at a time.

Usage: .venv/bin/python scripts/regrid_speed.py [--case FOLDER] [--channels 19] [--repeats 5] [--out FILE]

The grids are those ``ciml segment`` uses with the built-in model: FOLDER's case (BraTS names,
``<name>_t1.nii.gz`` ...) read as the model reads it, or, without ``--case``, a synthetic
full-size case (240 x 240 x 155 at 1 mm). CHANNELS random probability maps on the working grid
(19: what the built-in model's default maps write) are brought onto the reference grid by
SimpleITK's ``Resample``, channel by channel, and by :func:`ciml.data.separable.linear_regrid`,
interleaved in one process. Prints the medians, the ratio (below 1: faster) and the largest
difference, and writes them to the result file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))

from ciml.bundle import read_card  # noqa: E402
from ciml.data import load_case  # noqa: E402
from ciml.data.case import sitk_regrid  # noqa: E402
from ciml.data.separable import linear_regrid  # noqa: E402
from ciml.data.synthetic import write_cases  # noqa: E402
from ciml.research.record import script_envelope, write_record  # noqa: E402

BUILTIN = ROOT / "CIMLSegmentation" / "Resources" / "Models" / "brats-sample"


def grids(case: Path | None):
    card = read_card(BUILTIN)
    names = [m.name for m in card.modalities]
    with tempfile.TemporaryDirectory() as folder:
        if case is None:
            case = write_cases("brats", 1, folder, size="full")[0]
        loaded = load_case(card, {m: case / f"{case.name}_{m}.nii.gz" for m in names})
    return loaded.grid, loaded.reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a case folder in BraTS's layout (default: a synthetic one)")
    parser.add_argument("--channels", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="result file (default: print only)")
    options = parser.parse_args(argv)
    working, reference = grids(options.case)
    values = np.random.default_rng(0).random((options.channels, *working.size), dtype=np.float32)
    times: dict[str, list[float]] = {"sitk": [], "separable": []}
    outputs: dict[str, np.ndarray] = {}
    for repeat in range(options.repeats):
        for name in ("sitk", "separable") if repeat % 2 == 0 else ("separable", "sitk"):
            started = time.perf_counter()
            result = (sitk_regrid if name == "sitk" else linear_regrid)(values, working, reference)
            times[name].append(time.perf_counter() - started)
            outputs[name] = result
    difference = float(np.abs(outputs["sitk"] - outputs["separable"]).max())
    medians = {name: statistics.median(t) for name, t in times.items()}
    results = {"working_grid": working.to_dict(), "reference_grid": reference.to_dict(),
               "channels": options.channels, "repeats": options.repeats,
               "seconds": {name: [round(t, 3) for t in ts] for name, ts in times.items()},
               "median_s": {name: round(m, 3) for name, m in medians.items()},
               "ratio": round(medians["separable"] / medians["sitk"], 3), "max_abs_difference": difference}
    print(f"{options.channels} channels, {working.size} -> {reference.size}: SimpleITK {medians['sitk']:.2f} s, "
          f"one axis at a time {medians['separable']:.2f} s, ratio {results['ratio']:.3f}, "
          f"largest difference {difference:.2g}")
    if options.out:
        record = script_envelope("benchmark.regrid", results, "regrid_speed.py", argv)
        write_record(record, options.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
