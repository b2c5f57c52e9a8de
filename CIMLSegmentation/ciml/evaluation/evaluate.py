"""`ciml evaluate`'s job: score a bundle on labelled cases, per case and target, and tabulate."""

from __future__ import annotations

from typing import Any

from ciml.bundle.weights import Bundle
from ciml.data.datasets import build_dataset, validation_transforms
from ciml.evaluation.scoring import score_cases
from ciml.progress import Progress


def evaluate(bundle: Bundle, records: list[dict[str, Any]], device, progress: Progress,
             allow_missing: bool = False) -> dict[str, Any]:
    """Score every record; returns ``{"model", "cases": [...], "mean": {...}}``."""
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
