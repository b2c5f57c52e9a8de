"""The training-curve PNG of a run: loss per step and validation Dice per target.

Optional: without matplotlib (Slicer's Python has none) the curve is skipped and the run, whose
bundle is already saved, still succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def training_curve(history: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Draw loss (left) and validation Dice (right) from the run's log entries; None, drawing
    nothing, when matplotlib is not installed."""
    # optional, imported where used: Slicer's Python ships no matplotlib, and the backend
    # must be chosen before pyplot loads
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h for h in history if h.get("event") == "step"]
    vals = [h for h in history if h.get("event") == "validation"]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot([h["step"] for h in steps], [h["loss"] for h in steps], lw=0.8, color="#444")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_loss.grid(alpha=0.3)
    if vals:
        for target in vals[0]["dice"]:
            ax_dice.plot([v["step"] for v in vals], [v["dice"][target] for v in vals], marker="o", ms=3,
                         label=target)
        ax_dice.legend(loc="lower right")
    ax_dice.set(xlabel="step", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    ax_dice.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
