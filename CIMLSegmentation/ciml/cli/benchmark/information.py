"""`ciml benchmark information`: whether a brats bundle takes each structure its primary cannot
show from the auxiliary that shows it (:mod:`ciml.research.information`)."""

from __future__ import annotations

import argparse
import sys

from ciml.bundle import read_card
from ciml.cli.benchmark import finish
from ciml.errors import CIMLError
from ciml.inference.device import resolve_device
from ciml.research.information import information_table, measure_information
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    model = args.model or str(builtin_model())
    card = read_card(model)
    if card.modality_names != ("t1", "t1ce", "t2", "flair") or set(card.target_names) != {"WT", "TC", "ET"}:
        raise CIMLError(f"ciml benchmark information needs a brats model (t1, t1ce, t2, flair; WT, TC, ET); "
                        f"{model} is {', '.join(card.modality_names)}")
    device = str(resolve_device(args.device))
    print(f"ciml benchmark information: {model} on {args.cases} unseen brats cases", file=sys.stderr, flush=True)
    result = measure_information(model, cases=args.cases, seed=args.seed, variation=args.variation, device=device)
    primaries = {t: s.primary for s in card.subtasks for t in s.targets}
    return finish(args, result, information_table(result, primaries), device)
