"""`ciml benchmark plans`: a trained bundle's Dice, agreement with its card's plan and seconds
under each window plan, on unseen sample cases (:mod:`ciml.research.window_plans`)."""

from __future__ import annotations

import argparse
import sys

from ciml.cli.benchmark import finish
from ciml.research.window_plans import compare_plans, plans_table
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    model = args.model or str(builtin_model())
    print(f"ciml benchmark plans: {model} on {args.cases} unseen sample cases", file=sys.stderr, flush=True)
    result = compare_plans(model, cases=args.cases, seed=args.seed)
    return finish(args, result, plans_table(result))
