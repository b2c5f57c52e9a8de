"""`ciml benchmark speed`: CIML segmentation, its effects and Grad-CAM maps, early fusion,
SegResNet and a Captum loop timed on one synthetic BraTS-sized case (:mod:`ciml.research.benchmark`)."""

from __future__ import annotations

import argparse
import sys

from ciml.bundle import read_card
from ciml.cli.benchmark import finish
from ciml.errors import CIMLError
from ciml.inference.device import resolve_device
from ciml.inference.windows import plan_windows, window_count
from ciml.research.benchmark import Setup, benchmark_card, benchmark_image, run_benchmark, speed_table
from ciml.research.targets import CONFIGS


def configurations(only: str | None) -> tuple[str, ...]:
    """``--only``'s comma-separated names (default every configuration), each a known one."""
    if not only:
        return CONFIGS
    chosen = tuple(c.strip() for c in only.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CONFIGS]
    if unknown or not chosen:
        raise CIMLError(f"--only: unknown configuration {unknown[0] if unknown else only!r} (known: {', '.join(CONFIGS)})")
    return chosen


def run(args: argparse.Namespace) -> int:
    configs = configurations(args.only)
    device = resolve_device(args.device)
    # A bundle's own card (its window, spacing and network) when its trained weights are timed.
    card = read_card(args.model) if args.model else benchmark_card(args.preset, args.size)
    setup = Setup(card, benchmark_image(card, args.size, args.seed), device, args.seed, args.model)
    plan = plan_windows(setup.image, card)
    print(f"ciml benchmark speed: {card.name}, image {tuple(setup.image.shape)}, body box {plan.shape} in "
          f"{window_count(plan.shape, plan.roi_size, plan.overlap)} window(s) of {plan.roi_size}, "
          f"{args.repeats} repeat(s), device {device}", file=sys.stderr, flush=True)

    def progress(name: str, result: dict) -> None:
        print(f"  {name}: median {result['median_s']:.1f} s", file=sys.stderr, flush=True)

    result = run_benchmark(setup, configs, args.repeats, isolate=not args.in_process, windows=args.windows,
                           baseline_windows=args.baseline_windows, threads=args.threads, on_config=progress)
    result["model"] = args.model
    return finish(args, result, speed_table(result), str(device))
