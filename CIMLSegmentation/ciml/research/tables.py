"""Plain-text tables of the benchmarks' results: aligned columns, ratios with their verdicts."""

from __future__ import annotations

from typing import Any


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in rows]


def ratio_lines(ratios: dict[str, Any], width: int) -> list[str]:
    """One line per ratio (:func:`~ciml.research.targets.ratio_verdicts`): its value and its
    bound's verdict, or "report only"."""
    return [f"  {key:<{width}} {r['value']:6.2f}   "
            + ("report only" if r["target"] is None else f"target <= {r['target']}: {'met' if r['met'] else 'NOT met'}")
            for key, r in ratios.items()]


def gb(value: Any) -> str:
    """Bytes as GB with two decimals, ``-`` when not measured."""
    return "-" if value is None else f"{value / 1e9:.2f} GB"
