"""`ciml sample-data`: write synthetic cases (BraTS-like or `shapes`) in the BraTS layout."""

from __future__ import annotations

import argparse
import sys
import time

from ciml.data.synthetic import write_cases


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()

    def report(folder) -> None:
        print(f"wrote {folder}", file=sys.stderr)

    folders = write_cases(args.kind, args.cases, args.out, seed=args.seed, size=args.size,
                          on_case=report, variation=args.variation)
    variation = "" if args.variation == "standard" else f" {args.variation}"
    print(f"{len(folders)}{variation} {args.kind} case(s) in {args.out} "
          f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
