"""`ciml benchmark relations`: the relations table against real runs without each modality
(:mod:`ciml.research.relations`)."""

from __future__ import annotations

import argparse
import sys

from ciml.cli.benchmark import finish
from ciml.inference.device import resolve_device
from ciml.research.relations import measure_relations, relations_table
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    model = args.model or str(builtin_model())
    device = str(resolve_device(args.device))
    print(f"ciml benchmark relations: {model} on {args.cases} unseen brats cases", file=sys.stderr, flush=True)
    result = measure_relations(model, cases=args.cases, seed=args.seed, device=device)
    return finish(args, result, relations_table(result), device)
