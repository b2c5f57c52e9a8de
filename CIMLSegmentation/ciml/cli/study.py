"""`ciml study`: the accuracy study of docs/BENCHMARKS.md, one command per task.

Trains every method of the task's plan (ciml.research.study.plan) with the same budget and seeds on
synthetic cases, scores each on held-out cases (also with each auxiliary missing), and writes
results.json, results.md and the plots into --out, and result.json: the results in the envelope of
every benchmark's result file (:mod:`ciml.research.record`: the command, the commit, the machine
and the date). Rerunning continues an interrupted study; the study folder's result.json, like its
results.json, then describes the whole study and the run that completed it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ciml.errors import CIMLError
from ciml.io_utils import atomic_path
from ciml.research.record import envelope
from ciml.research.study.plan import plan_for
from ciml.research.study.report import write_report
from ciml.research.study.runner import run_study


def run(args: argparse.Namespace) -> int:
    changes: dict = {"max_steps": args.max_steps}
    if args.max_steps is not None and args.max_steps < 1:
        raise CIMLError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        raise CIMLError("--jobs and --threads must be >= 1")
    if args.seeds:
        try:
            changes["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise CIMLError(f"--seeds {args.seeds}: expected integers separated by commas") from None
    plan = plan_for(args.task, **changes)
    if args.methods:
        chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in plan.all_methods]
        if unknown:
            raise CIMLError(f"--methods {unknown[0]}: not in the {args.task} plan "
                            f"(known: {', '.join(plan.all_methods)})")

        plan = replace(plan, methods=tuple(m for m in plan.methods if m in chosen),
                       missing_models=tuple(m for m in plan.missing_models if m in chosen),
                       semi_supervised=tuple(m for m in plan.semi_supervised if m in chosen))
    out = Path(args.out)
    failures = [] if args.report_only else run_study(
        plan, out, args.jobs, args.threads, on_event=lambda line: print(line, flush=True), device=args.device)
    results = write_report(plan, out)
    record = envelope("study", results, getattr(args, "_argv", None), args.device, args.threads)
    with atomic_path(out / "result.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    text = (out / "results.md").read_text(encoding="utf-8")
    # ± and Δ: a terminal without UTF-8 gets replacements rather than an encoding error
    sys.stdout.write(text.encode(sys.stdout.encoding or "utf-8", "replace").decode(sys.stdout.encoding or "utf-8"))
    print(f"\nstudy folder: {out}")
    if failures:
        raise CIMLError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return 0
