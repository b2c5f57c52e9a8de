"""Whole `ciml segment` processes on one case, two ways, interleaved.

Usage: .venv/bin/python scripts/segment_speed.py --case FOLDER [--repeats 3] [--model BUNDLE]
           [--maps effects] [--against SOURCE [--against-model BUNDLE]] [--out FILE]

FOLDER holds one case as BraTS names it (``<name>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``).
Without ``--against``: the network in ONNX Runtime against PyTorch (the export is made and cached
before the timed runs). With ``--against SOURCE``: this source tree against another one (a
``git worktree`` of an earlier commit, or ``.`` with ``--against-model``), both in PyTorch, the same
Python and packages; ``--against-model`` gives the other way its own bundle. Prints each
run's wall time and report.json stage times, then the medians and the ratio first / second
(below 1: faster), and writes them to the result file with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))

from ciml.research.record import script_envelope, write_record  # noqa: E402

MODALITIES = ("t1", "t1ce", "t2", "flair")


def run(way: dict, case: Path, out: Path, maps: str) -> tuple[float, dict]:
    args = [sys.executable, "-m", "ciml", "segment", "--model", way["model"], "--out", str(out), "--maps", maps,
            "--progress", "none"]
    for m in MODALITIES:
        args += ["--input", f"{m}={case / f'{case.name}_{m}.nii.gz'}"]
    env = {**os.environ, "CIML_RUNTIME": way["runtime"], "PYTHONPATH": str(way["source"])}
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env, cwd=way["source"])
    report = json.loads((out / "report.json").read_text())
    return time.perf_counter() - started, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, required=True)
    parser.add_argument("--model", default=str(ROOT / "CIMLSegmentation" / "Resources" / "Models" / "brats-sample"))
    parser.add_argument("--maps", default="effects", help="ciml segment --maps (default: effects, its default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another source tree (its root) to compare with")
    parser.add_argument("--against-model", help="the bundle the --against way segments with (default: --model)")
    parser.add_argument("--out", type=Path, help="result file (default: print only)")
    options = parser.parse_args(argv)
    here = {"source": ROOT / "CIMLSegmentation", "model": options.model}
    if options.against:
        ways = {"this tree": {**here, "runtime": "torch"},
                "against": {"source": options.against.resolve() / "CIMLSegmentation", "runtime": "torch",
                            "model": options.against_model or options.model}}
    else:
        ways = {"onnxruntime": {**here, "runtime": "onnxruntime"}, "pytorch": {**here, "runtime": "torch"}}
    names = list(ways)
    walls: dict[str, list[float]] = {name: [] for name in names}
    stages: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:  # exports once, fills the caches
            run(ways[name], options.case, Path(folder) / "warm", options.maps)
        for repeat in range(options.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                wall, report = run(ways[name], options.case, Path(folder) / f"run-{repeat}-{name}", options.maps)
                walls[name].append(round(wall, 2))
                stages[name].append(report["timings_s"])
                print(f"{name:12s} {wall:6.1f} s  {report['runtime']['name']}  {report['timings_s']}", flush=True)
    medians = {name: statistics.median(walls[name]) for name in names}
    ratio = medians[names[0]] / medians[names[1]]
    print(f"median whole process: {names[0]} {medians[names[0]]:.1f} s, {names[1]} {medians[names[1]]:.1f} s, "
          f"ratio {ratio:.2f}")
    if options.out:
        results = {"case": options.case.name, "maps": options.maps, "repeats": options.repeats,
                   "ways": {name: {"runtime": way["runtime"], "model": way["model"],
                                   "source": "this tree" if way["source"] == here["source"] else str(options.against)}
                            for name, way in ways.items()},
                   "wall_s": walls, "median_s": medians, "stages_s": stages, "ratio": round(ratio, 3)}
        record = script_envelope("benchmark.segment", results, "segment_speed.py", argv)
        write_record(record, options.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
