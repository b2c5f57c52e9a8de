"""`ciml benchmark profile`: where the time of one window of the window plan goes, block by
block, on the benchmark case (:mod:`ciml.research.profile`)."""

from __future__ import annotations

import argparse

from ciml.bundle import read_card
from ciml.cli.benchmark import finish
from ciml.inference.windows import plan_windows, window_count
from ciml.research.benchmark import benchmark_card, benchmark_image
from ciml.research.profile import format_profile, profile_network


def run(args: argparse.Namespace) -> int:
    card = read_card(args.model) if args.model else benchmark_card(args.preset, args.size)
    plan = plan_windows(benchmark_image(card, args.size, args.seed), card)
    result = profile_network(card, model=args.model, seed=args.seed, repeats=args.repeats, roi=plan.roi_size,
                             compile_network=args.compile)
    result.update(box=list(plan.shape), windows=window_count(plan.shape, plan.roi_size, plan.overlap))
    return finish(args, result, format_profile(result))
