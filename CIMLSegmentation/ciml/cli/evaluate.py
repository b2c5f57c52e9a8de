"""`ciml evaluate`: plain and lesion-wise Dice and HD95 per case and target of a bundle on labelled cases."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ciml.bundle.weights import load_bundle
from ciml.data import check_records, list_cases
from ciml.errors import CIMLError
from ciml.evaluation.evaluate import evaluate, table
from ciml.inference.device import resolve_device
from ciml.progress import Progress
from ciml.research.record import envelope, refuse_existing, write_record


def run(args: argparse.Namespace) -> int:
    refuse_existing(args.out)  # before minutes of segmenting, not after
    progress = Progress(args.progress)
    device = resolve_device(args.device)
    bundle = load_bundle(args.model, device=str(device))
    card = bundle.card
    missing = [m.strip() for m in (args.missing or "").split(",") if m.strip()]
    for m in missing:
        if m not in card.modality_names:
            raise CIMLError(f"--missing {m}: not a modality of this model ({', '.join(card.modality_names)})")
    if len(missing) == len(card.modality_names):
        raise CIMLError("--missing: every modality withheld leaves nothing to segment")
    records = [r for r in list_cases(args.data, args.layout) if r.get("label")]
    if not records:
        raise CIMLError(f"{args.data}: no labelled cases to evaluate")
    check_records(records, card.modality_names, require_label=True)
    records = [{k: v for k, v in r.items() if k not in missing} for r in records]
    if card.reference in missing:  # as `ciml segment`: the first given modality's grid instead
        bundle = replace(bundle, card=replace(card, reference=next(m for m in card.modality_names if m not in missing)))
    report = evaluate(bundle, records, device, progress, allow_missing=bool(missing))
    report["missing"] = missing
    sys.stdout.write(table(report))
    if args.out:  # a result file: the scores with the command, the commit, the machine and the date
        write_record(envelope("evaluate", report, getattr(args, "_argv", None), str(device)), args.out)
    progress.done(mean=report["mean"])
    return 0
