"""What every result block shares: mean ± SD, the spread verdict, the source link, Markdown
tables, the machine line."""

from __future__ import annotations


def pm(value: dict) -> str:
    """``{"mean": m, "sd": s}`` as ``m ± s``."""
    return f"{value['mean']:.3f} ± {value['sd']:.3f}"


def beyond(a: dict, b: dict) -> bool:
    """Whether two mean ± SD results differ beyond their spread: their intervals do not touch."""
    return a["mean"] + a["sd"] < b["mean"] - b["sd"] or b["mean"] + b["sd"] < a["mean"] - a["sd"]


def spread(a: dict, b: dict) -> str:
    return "beyond the spread" if beyond(a, b) else "within the spread"


def source(results: dict, stem: str) -> str:
    """The result file's link, with its date: every row says where its numbers live."""
    return f"[{stem}](results/{stem}.json), {results[stem]['date'][:10]}"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def machine(r: dict, stem: str) -> str:
    m = r[stem]["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), {m['device']}{gpu}"
