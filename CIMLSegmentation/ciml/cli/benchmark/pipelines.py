"""`ciml benchmark pipelines`: whole `ciml segment` processes against MONAI's BraTS SegResNet
bundle pipeline, interleaved, with each process's peak memory (:mod:`ciml.research.yardstick`)."""

from __future__ import annotations

import argparse
import sys
import tempfile

from ciml.bundle import read_card
from ciml.cli.benchmark import finish
from ciml.research.benchmark import benchmark_card
from ciml.research.yardstick import pipelines_table, run_pipelines
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    card = read_card(args.model) if args.model else benchmark_card(args.preset, "full")
    print(f"ciml benchmark pipelines: {card.name} bundle, built-in model and SegResNet pipeline, "
          f"{args.size} case, {args.repeats} interleaved repeat(s)", file=sys.stderr, flush=True)

    def progress(name: str, repeat: int, r: dict) -> None:
        print(f"  repeat {repeat + 1} {name}: {r['seconds']:.1f} s, peak {r['rss_peak_bytes'] / 1e9:.2f} GB",
              file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ciml-pipelines-") as tmp:
        result = run_pipelines(args.workdir or tmp, card, builtin_model(), args.size, args.repeats, args.seed,
                               threads=args.threads, on_run=progress)
    return finish(args, result, pipelines_table(result))
