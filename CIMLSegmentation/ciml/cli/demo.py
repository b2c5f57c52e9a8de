"""`ciml demo`: segment a synthetic BraTS-like case with the built-in model and draw an overview."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="segment a sample case with the built-in model and draw an overview",
                       description="Make a synthetic BraTS-like case, segment it with the built-in sample "
                                   "model, write the outputs and overview.png, and print the Dice against "
                                   "the case's known label and each modality's contribution.")
    p.add_argument("--out", default="ciml-demo", metavar="DIR", help="output folder (ciml-demo)")
    p.add_argument("--model", metavar="BUNDLE", help="another bundle with the brats modalities")
    p.add_argument("--size", choices=("small", "full"), default="small",
                   help="the case's size: small (96x96x64 at 2.5 mm) or full (240x240x155 at 1 mm)")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ciml.engine.demo import run_demo, summary
    from ciml.engine.progress import Progress
    from ciml.resources import builtin_model

    model = Path(args.model) if args.model else builtin_model()
    result = run_demo(Path(args.out), model, Progress(args.progress), args.size)
    sys.stdout.write(summary(result))
    return 0
