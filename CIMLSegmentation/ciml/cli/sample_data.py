"""`ciml sample-data`: write synthetic cases (BraTS-like or `shapes`) in the BraTS layout."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sample-data", help="write synthetic sample cases in the BraTS folder layout",
        description="Write N synthetic cases as DIR/<case>/<case>_<modality>.nii.gz plus "
                    "<case>_seg.nii.gz. 'brats': a brain-tumour phantom (t1, t1ce, t2, flair; "
                    "labels 0/1/2/4). 'shapes': the complementary-information demo task "
                    "(shapes, cue, echo; label 0/1). Deterministic for a seed; never "
                    "overwrites a case. See docs/sample-data.md.")
    # Kinds and sizes are checked by ciml.data.synthetic (one clear message, exit code 2),
    # not by argparse `choices`, so the API and the command line refuse them alike.
    p.add_argument("--kind", required=True, metavar="{brats,shapes}", help="which task")
    p.add_argument("--cases", required=True, type=int, metavar="N", help="number of cases (>= 1)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder (created if needed)")
    p.add_argument("--seed", type=int, default=0, help="run seed (>= 0, default 0)")
    p.add_argument("--size", default="small", metavar="{small,full}",
                   help="small: fast (brats 96x96x64 at 2.5 mm, shapes 64^3 at 2 mm); "
                        "full: brats 240x240x155 at 1 mm, shapes 128^3 at 1 mm (default small)")
    return p


def run(args: argparse.Namespace) -> int:
    # Imported here so that `ciml --help` stays fast.
    from ciml.data.synthetic import write_cases

    start = time.perf_counter()

    def report(folder) -> None:
        print(f"wrote {folder}", file=sys.stderr)

    folders = write_cases(args.kind, args.cases, args.out, seed=args.seed, size=args.size,
                          on_case=report)
    print(f"{len(folders)} {args.kind} case(s) in {args.out} "
          f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
