"""Page faults and time of one window of a bundle's network, without and with huge pages.

Usage: .venv/bin/python scripts/window_faults.py --model BUNDLE [--window 152 96 128] [--calls 3] [--rounds 2] [--out FILE]

PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, at its first allocation, so each setting runs in a
process of its own (this script, with ``--child``), the two interleaved ``--rounds`` times. Each
process calls the network ``--calls`` times on one random window (after one call to warm up) and
prints, per call, the seconds and the minor page faults (``getrusage``). The default window is
the one ``ciml segment`` uses for the ``brats`` preset on the synthetic full-size case.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))

from ciml.startup import HUGE_PAGES  # noqa: E402  (imports no torch)


def child(model: str, window: list[int], calls: int) -> None:
    import torch

    from ciml.bundle.weights import load_bundle

    network = load_bundle(model).network.eval()
    x = torch.randn(1, len(network.card.modalities), *window)
    rows = []
    with torch.no_grad():
        network(x)
        for _ in range(calls):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            network(x)
            rows.append({"seconds": time.perf_counter() - start,
                         "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults})
    print(json.dumps(rows))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a bundle folder")
    p.add_argument("--window", type=int, nargs="+", default=[152, 96, 128], help="the window's spatial size")
    p.add_argument("--calls", type=int, default=3, help="timed calls per process")
    p.add_argument("--rounds", type=int, default=2, help="interleaved pairs of processes")
    p.add_argument("--out", help="result file (default: print only)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.model, args.window, args.calls)
        return 0
    command = [sys.executable, __file__, "--child", "--model", args.model, "--calls", str(args.calls),
               "--window", *map(str, args.window)]
    calls: dict[str, list[dict]] = {"0": [], "1": []}
    for r in range(args.rounds):
        for value in ("0", "1"):
            done = subprocess.run(command, capture_output=True, text=True, check=True,
                                  env={**os.environ, HUGE_PAGES: value})
            rows = json.loads(done.stdout.splitlines()[-1])
            calls[value] += rows
            print(f"round {r + 1} {HUGE_PAGES}={value}: " +
                  ", ".join(f"{x['seconds']:.2f} s / {x['faults']} faults" for x in rows))
    if args.out:
        results = {"model": args.model, "window": args.window, "rounds": args.rounds,
                   "calls": {f"{HUGE_PAGES}={v}": rows for v, rows in calls.items()}}
        from ciml.research.record import script_envelope, write_record  # torch: only where a file is written

        record = script_envelope("benchmark.window-faults", results, "window_faults.py")
        write_record(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
