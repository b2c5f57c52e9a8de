"""What a study's training logs say beyond the held-out scores: the validation curves (has every
seed converged?) and the gates' diagnostics at the last validation (what each auxiliary passes).

Both are read from each run's ``log.jsonl`` (``ciml train`` writes ``{"event": "validation"}`` and
``{"event": "gates"}`` lines at every validation, :mod:`ciml.training.trainer`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ciml.research.study.plan import StudyPlan
from ciml.research.study.runner import run_folder


def read_events(run: Path, event: str) -> list[dict[str, Any]]:
    """Every ``event`` line of a run's log.jsonl, in order (none when the log does not exist)."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    lines = (json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip())
    return [e for e in lines if e.get("event") == event]


def validation_curves(plan: StudyPlan, out: Path) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """method -> seed -> [(step, validation mean Dice)], for every run that has validated."""
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for method in plan.all_methods:
        for seed in plan.seeds:
            points = [(e["step"], e["mean_dice"]) for e in read_events(run_folder(out, method, seed), "validation")]
            if points:
                curves.setdefault(method, {})[seed] = points
    return curves


def converged(points: list[tuple[int, float]], tolerance: float = 0.02) -> bool:
    """Whether a validation curve has flattened: its last value is within ``tolerance`` of the
    best of its second half (a curve still climbing at its end has not converged). Fewer than
    four validations cannot say: ``False``."""
    if len(points) < 4:
        return False
    second_half = [d for _, d in points[len(points) // 2:]]
    return max(second_half) - second_half[-1] <= tolerance and second_half[-1] - second_half[0] <= tolerance


def gate_summary(plan: StudyPlan, out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> auxiliary -> the last validation's gate diagnostics, each gate of that auxiliary
    (every sub-task and level) averaged per seed, then mean and SD over the seeds: ``kl`` (nats
    per voxel; ``None`` without a bottleneck), ``message_ratio``, ``collapsed`` (share of its
    gates) and ``seeds``."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method in plan.all_methods:
        per_seed: dict[str, list[dict[str, float | None]]] = {}
        for seed in plan.seeds:
            events = read_events(run_folder(out, method, seed), "gates")
            if not events:
                continue
            by_auxiliary: dict[str, list[dict[str, Any]]] = {}
            for g in events[-1]["gates"]:
                by_auxiliary.setdefault(g["auxiliary"], []).append(g)
            for auxiliary, gates in by_auxiliary.items():
                kls = [g["kl"] for g in gates if g["kl"] is not None]
                per_seed.setdefault(auxiliary, []).append({
                    "kl": statistics.fmean(kls) if kls else None,
                    "message_ratio": statistics.fmean(g["message_ratio"] for g in gates),
                    "collapsed": sum(g["collapsed"] for g in gates) / len(gates)})
        if per_seed:
            summary[method] = {a: _over_seeds(rows) for a, rows in per_seed.items()}
    return summary


def _over_seeds(rows: list[dict[str, float | None]]) -> dict[str, Any]:
    result: dict[str, Any] = {"seeds": len(rows)}
    for key in ("kl", "message_ratio", "collapsed"):
        values = [r[key] for r in rows if r[key] is not None]
        result[key] = None if not values else {
            "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return result


def gate_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: per method and auxiliary, KL per voxel, message / primary rms and the share of
    collapsed gates (mean ± SD over seeds)."""
    if not summary:
        return "(no gate diagnostics yet)\n"

    def cell(value: dict[str, float] | None, digits: int) -> str:
        return "–" if value is None else f"{value['mean']:.{digits}f} ± {value['sd']:.{digits}f}"

    lines = ["| method | auxiliary | seeds | KL per voxel (nats) | message / primary rms | collapsed gates |",
             "|---|---|---|---|---|---|"]
    for method, auxiliaries in summary.items():
        for auxiliary, s in auxiliaries.items():
            lines.append(f"| {method} | {auxiliary} | {s['seeds']} | {cell(s['kl'], 3)} | "
                         f"{cell(s['message_ratio'], 3)} | {cell(s['collapsed'], 2)} |")
    return "\n".join(lines) + "\n"


def convergence_table(curves: dict[str, dict[int, list[tuple[int, float]]]]) -> str:
    """Markdown: per method, each seed's last validation Dice and whether its curve has flattened."""
    lines = ["| method | seeds converged | last validation Dice per seed |", "|---|---|---|"]
    for method, seeds in curves.items():
        flat = sum(converged(p) for p in seeds.values())
        last = ", ".join(f"{p[-1][1]:.3f} (step {p[-1][0]})" for p in seeds.values())
        lines.append(f"| {method} | {flat} of {len(seeds)} | {last} |")
    return "\n".join(lines) + "\n"
