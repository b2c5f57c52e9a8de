"""A study's numbers: per-method mean and seed spread of Dice and HD95, as JSON, Markdown tables
and plots.

A seed's score is the mean over the held-out cases; a method's score is the mean of its seeds'
scores with their sample standard deviation (the seed spread). A difference between two methods
counts as larger than the seed spread when it exceeds the sum of their two standard deviations,
i.e. their mean +- SD intervals do not overlap: a deliberately plain rule for three seeds, where
a t-test has little power and needs assumptions the runs do not support.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ciml.research.study.figures import case_figure, dice_bars, missing_bars, validation_curves_figure
from ciml.research.study.plan import METHODS, StudyPlan
from ciml.research.study.runner import run_folder
from ciml.research.study.training_log import convergence_table, gate_summary, gate_table, validation_curves


def _spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON file, or the numbers of a result file (``ciml evaluate --out``)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["results"] if "kind" in data and "results" in data else data


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Seed spread of ``ciml evaluate`` reports (one per seed): per metric, per target and the
    mean over targets."""
    if not reports:
        return None
    targets = list(reports[0]["mean"]["dice"])
    result: dict[str, Any] = {}
    for metric in ("dice", "hd95"):
        result[metric] = {t: _spread([r["mean"][metric][t] for r in reports]) for t in targets}
        result[metric]["mean"] = _spread([statistics.fmean(r["mean"][metric].values()) for r in reports])
    return result


def beyond_spread(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two summaries' means differ by more than their seed spreads together (never with
    fewer than two seeds on either side: one seed has no spread to compare with)."""
    return min(a["n"], b["n"]) > 1 and abs(a["mean"] - b["mean"]) > a["sd"] + b["sd"]


def collect(plan: StudyPlan, out: Path) -> dict[str, Any]:
    """Everything the study has produced so far (missing runs are left out)."""
    methods: dict[str, Any] = {}
    for method in plan.all_methods:
        if not plan.applicable(method):
            continue
        reports = [r for s in plan.seeds if (r := _read(run_folder(out, method, s) / "eval.json"))]
        entry = {"description": METHODS[method].description, "seeds": len(reports), "scores": summarise(reports)}
        if method in plan.missing_models:
            entry["missing"] = {}
            for a in plan.auxiliaries():
                missing = [r for s in plan.seeds if (r := _read(run_folder(out, method, s) / f"eval-missing-{a}.json"))]
                entry["missing"][a] = summarise(missing)
        entry["train_time_s"] = [t for s in plan.seeds if (t := _train_time(run_folder(out, method, s)))]
        entry["parameters"] = _parameters(run_folder(out, method, plan.seeds[0]))
        methods[method] = entry
    return {"task": plan.task, "methods": methods}


def _train_time(run: Path) -> float | None:
    log = run.with_suffix(".train.log")
    if not log.is_file():
        return None
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("done:") and " in " in line:
            return float(line.split(" in ", 1)[1].split(" s", 1)[0])
    return None


def _parameters(run: Path) -> int | None:
    metadata = _read(run / "bundle" / "metadata.json")
    return metadata["parameters"] if metadata else None


def _cell(summary: dict[str, Any], digits: int = 3) -> str:
    return f"{summary['mean']:.{digits}f} ± {summary['sd']:.{digits}f}"


def main_table(results: dict[str, Any], methods: tuple[str, ...], reference: str = "ciml") -> str:
    """Markdown: Dice and HD95 per target, mean ± SD over seeds, and the difference to CIML."""
    rows = [(m, results["methods"][m]) for m in methods if m in results["methods"] and results["methods"][m]["scores"]]
    if not rows:
        return "(no results yet)\n"
    targets = [t for t in rows[0][1]["scores"]["dice"] if t != "mean"]
    ref = results["methods"].get(reference, {}).get("scores")
    header = (["method", "seeds"] + [f"Dice {t}" for t in targets] + ["mean Dice", f"Δ vs {reference}"]
              + [f"HD95 {t} (mm)" for t in targets] + ["parameters", "training (s)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in rows:
        s = entry["scores"]
        delta = "–"
        if ref is not None and name != reference:
            d = s["dice"]["mean"]["mean"] - ref["dice"]["mean"]["mean"]
            delta = f"{d:+.3f}" + (" *" if beyond_spread(s["dice"]["mean"], ref["dice"]["mean"]) else "")
        cells = ([name, str(entry["seeds"])] + [_cell(s["dice"][t]) for t in targets] + [_cell(s["dice"]["mean"]), delta]
                 + [_cell(s["hd95"][t], 1) for t in targets]
                 + [f"{entry['parameters']:,}" if entry.get("parameters") else "–",
                    f"{statistics.fmean(entry['train_time_s']):.0f}" if entry.get("train_time_s") else "–"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def missing_table(results: dict[str, Any], plan: StudyPlan) -> str:
    """Markdown: mean Dice over targets with every modality, and with each auxiliary missing."""
    auxiliaries = plan.auxiliaries()
    header = ["method", "all modalities"] + [f"without {a}" for a in auxiliaries] + ["largest drop"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in plan.missing_models:
        entry = results["methods"].get(name)
        if not entry or not entry["scores"]:
            continue
        full = entry["scores"]["dice"]["mean"]
        cells, drops = [name, _cell(full)], []
        for a in auxiliaries:
            s = entry["missing"].get(a)
            cells.append(_cell(s["dice"]["mean"]) if s else "–")
            if s:
                drops.append(full["mean"] - s["dice"]["mean"]["mean"])
        cells.append(f"{max(drops):.3f}" if drops else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(plan: StudyPlan, out: Path) -> dict[str, Any]:
    """results.json, results.md and the plots in ``out``; returns the results."""

    results = collect(plan, out)
    curves = validation_curves(plan, out)
    results["gates"] = gate_summary(plan, out)
    results["curves"] = {m: {str(s): p for s, p in seeds.items()} for m, seeds in curves.items()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    parts = [f"# Study `{plan.task}`\n", "## Methods (all labelled training cases)\n", main_table(results, plan.methods)]
    if plan.missing_models:
        parts += ["\n## Missing modalities (mean Dice over targets)\n", missing_table(results, plan)]
    if plan.semi_supervised:
        parts += ["\n## Semi-supervised\n", main_table(results, plan.semi_supervised, reference=plan.semi_supervised[0])]
    parts.append("\n`*`: the difference is larger than the two methods' seed spreads together.\n")
    parts += ["\n## Gates at the last validation (first validation case)\n", gate_table(results["gates"]),
              "\n## Convergence (validation curves: curves.png)\n", convergence_table(curves),
              "\nConverged: the last validation is within 0.02 of the best of the curve's second half, "
              "which rose by at most 0.02.\n"]
    (out / "results.md").write_text("\n".join(parts), encoding="utf-8")
    dice_bars(results, plan.methods, out / "dice.png", f"{plan.task}: held-out Dice, mean ± SD over seeds")
    if plan.missing_models:
        missing_bars(results, plan, out / "missing.png")
    if plan.semi_supervised:
        dice_bars(results, plan.semi_supervised, out / "semi-supervised.png", f"{plan.task}: few labels")
    validation_curves_figure(curves, out / "curves.png", f"{plan.task}: validation Dice during training")
    case_figure(plan, out, out / "case.png")
    return results
