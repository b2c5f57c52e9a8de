"""`ciml evaluate`: Dice and HD95 per case and target of a bundle on labelled cases."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="score a model on labelled cases (Dice, HD95)",
                       description="Segment every labelled case of a dataset with a bundle and score it "
                                   "per target with MONAI's Dice and HD95 (empty masks scored as the "
                                   "BraTS challenge does; see docs/training.md).")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="the bundle folder")
    p.add_argument("--data", required=True, metavar="DIR_OR_FILE", help="dataset folder, datalist or CSV")
    p.add_argument("--layout", help="dataset layout, when detection is not wanted")
    p.add_argument("--out", metavar="FILE.json", help="also write the scores here (never overwrites)")
    p.add_argument("--missing", metavar="NAME,...", help="evaluate as if these modalities were absent")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ciml.bundle import load_bundle
    from ciml.data import check_records, list_cases
    from ciml.engine.device import resolve_device
    from ciml.engine.progress import Progress
    from ciml.errors import CIMLError

    progress = Progress(args.progress)
    device = resolve_device(args.device)
    bundle = load_bundle(args.model, device=str(device))
    card = bundle.card
    missing = [m.strip() for m in (args.missing or "").split(",") if m.strip()]
    for m in missing:
        if m not in card.modality_names:
            raise CIMLError(f"--missing {m}: not a modality of this model ({', '.join(card.modality_names)})")
    if missing and card.reference in missing:
        raise CIMLError(f"--missing {card.reference}: the reference modality gives the output grid and must be given")
    records = [r for r in list_cases(args.data, args.layout) if r.get("label")]
    if not records:
        raise CIMLError(f"{args.data}: no labelled cases to evaluate")
    check_records(records, card.modality_names, require_label=True)
    records = [{k: v for k, v in r.items() if k not in missing} for r in records]
    report = evaluate(bundle, records, device, progress, allow_missing=bool(missing))
    report["missing"] = missing
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        from ciml.io_utils import write_text_new

        write_text_new(args.out, text)
    sys.stdout.write(table(report))
    progress.done(mean=report["mean"])
    return 0


def evaluate(bundle, records: list[dict[str, Any]], device, progress, allow_missing: bool = False) -> dict[str, Any]:
    """Score every record; returns ``{"model", "cases": [...], "mean": {...}}``."""
    from ciml.data.datasets import build_dataset, validation_transforms
    from ciml.engine.validation import score_cases

    samples = build_dataset(records, validation_transforms(bundle.card, allow_missing), cache="none")
    per_case, means = score_cases(bundle.network, bundle.card, samples, device,
                                  on_case=lambda i: progress.update("evaluating", i / len(records), case=i))
    return {"model": str(bundle.path), "cases": per_case, "mean": means}


def table(report: dict[str, Any]) -> str:
    """The scores as a plain-text table: one row per case, then the mean."""
    targets = list(report["mean"]["dice"])
    header = ["case"] + [f"Dice {t}" for t in targets] + [f"HD95 {t}" for t in targets]
    rows = [[c["case"]] + [f"{c['dice'][t]:.3f}" for t in targets] + [f"{c['hd95'][t]:.1f}" for t in targets]
            for c in report["cases"]]
    rows.append(["mean"] + [f"{report['mean']['dice'][t]:.3f}" for t in targets]
                + [f"{report['mean']['hd95'][t]:.1f}" for t in targets])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), *(line(r) for r in rows[:-1]), "-" * len(line(header)), line(rows[-1])]) + "\n"
