"""Whole `ciml segment` processes with the network in ONNX Runtime and in PyTorch, interleaved.

Usage: .venv/bin/python scripts/segment_speed.py --case FOLDER [--repeats 3] [--model BUNDLE]

FOLDER holds one case as BraTS names it (``<name>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``).
Prints each run's wall time and report.json stage times, then the medians and the ratio
ONNX Runtime / PyTorch (below 1: faster). The export is made (and cached) before the timed runs.
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

MODALITIES = ("t1", "t1ce", "t2", "flair")


def run(model: str, case: Path, out: Path, runtime: str) -> tuple[float, dict]:
    args = [sys.executable, "-m", "ciml", "segment", "--model", model, "--out", str(out), "--progress", "none"]
    for m in MODALITIES:
        args += ["--input", f"{m}={case / f'{case.name}_{m}.nii.gz'}"]
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "CIML_RUNTIME": runtime})
    report = json.loads((out / "report.json").read_text())
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, required=True)
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1]
                                               / "CIMLSegmentation" / "Resources" / "Models" / "brats-sample"))
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    walls: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
    with tempfile.TemporaryDirectory() as folder:
        run(options.model, options.case, Path(folder) / "warm", "")  # exports once, fills the caches
        for repeat in range(options.repeats):
            for runtime in ("torch", "onnxruntime") if repeat % 2 else ("onnxruntime", "torch"):
                wall, report = run(options.model, options.case, Path(folder) / runtime,
                                   "torch" if runtime == "torch" else "")
                walls[runtime].append(wall)
                print(f"{runtime:12s} {wall:6.1f} s  {report['runtime']}  {report['timings_s']}", flush=True)
    ort, eager = statistics.median(walls["onnxruntime"]), statistics.median(walls["torch"])
    print(f"median whole process: onnxruntime {ort:.1f} s, pytorch {eager:.1f} s, ratio {ort / eager:.2f}")


if __name__ == "__main__":
    main()
