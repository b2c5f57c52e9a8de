"""`ciml demo`: segment a synthetic BraTS-like case with the built-in model and draw an overview."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ciml.progress import Progress
from ciml.research.demo import run_demo, summary
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else builtin_model()
    result = run_demo(Path(args.out), model, Progress(args.progress), args.size, args.seed)
    sys.stdout.write(summary(result))
    return 0
