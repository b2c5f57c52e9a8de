"""`ciml study`: the accuracy study of docs/BENCHMARKS.md, one command per task.

Trains every method of the task's plan (ciml.study.plan) with the same budget and seeds on
synthetic cases, scores each on held-out cases (also with each auxiliary missing), and writes
results.json, results.md and the plots into --out. Rerunning continues an interrupted study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ciml.errors import CIMLError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ciml.study.plan import PLANS

    p = sub.add_parser("study", help="accuracy study: every method trained with the same budget, scored on held-out cases",
                       description="Train CIML, the baselines and the ablations of a task's study plan with the "
                                   "same budget and seeds, evaluate them on held-out synthetic cases (also with "
                                   "each auxiliary missing), and write results.json, results.md and plots. "
                                   "Rerun to continue an interrupted study. See docs/BENCHMARKS.md.")
    p.add_argument("--task", required=True, choices=sorted(PLANS), help="which study plan")
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (data, runs, results)")
    p.add_argument("--seeds", metavar="S,...", help="training seeds (plan: 0,1,2)")
    p.add_argument("--methods", metavar="NAME,...", help="only these of the plan's methods")
    p.add_argument("--max-steps", type=int, metavar="N", help="training steps of every run (plan's budget)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained at once (default 1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per run (default: torch's choice; use cores / --jobs)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from the runs so far")
    return p


def run(args: argparse.Namespace) -> int:
    from ciml.study.plan import plan_for
    from ciml.study.report import write_report
    from ciml.study.runner import run_study

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
        from dataclasses import replace

        plan = replace(plan, methods=tuple(m for m in plan.methods if m in chosen),
                       missing_models=tuple(m for m in plan.missing_models if m in chosen),
                       semi_supervised=tuple(m for m in plan.semi_supervised if m in chosen))
    out = Path(args.out)
    failures = [] if args.report_only else run_study(
        plan, out, args.jobs, args.threads, on_event=lambda line: print(line, flush=True))
    write_report(plan, out)
    text = (out / "results.md").read_text(encoding="utf-8")
    # ± and Δ: a terminal without UTF-8 gets replacements rather than an encoding error
    sys.stdout.write(text.encode(sys.stdout.encoding or "utf-8", "replace").decode(sys.stdout.encoding or "utf-8"))
    print(f"\nstudy folder: {out}")
    if failures:
        raise CIMLError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return 0
