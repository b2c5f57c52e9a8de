"""Dice on held-out real cases against minutes of training: the built-in model fine-tuned, and the
same network from random weights, one line per fold, one panel per target (numbers only, no
image of a case). Reads the result files of ``scripts/finetune_real.py``.

    python scripts/plot_finetune_real.py   # -> docs/images/finetune-real-curve.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
STARTS = {"finetune-real-builtin": ("the built-in model", "tab:blue", "-"),
          "finetune-real-scratch": ("random weights", "tab:orange", "--")}
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the result blocks beside this file
from result_blocks_finetune import TARGET  # noqa: E402  (one place for the target)

MARKERS = ("o", "s", "^")  # one per fold, the same for both starts


def main() -> int:
    fig, axes = plt.subplots(1, len(TARGET), figsize=(12, 3.8), sharey=True)
    for stem, (label, colour, style) in STARTS.items():
        path = RESULTS / f"{stem}.json"
        if not path.is_file():
            continue
        for fold in json.loads(path.read_text())["results"]["folds"]:
            minutes = [p["minutes"] for p in fold["curve"]]
            for ax, target in zip(axes, TARGET):
                ax.plot(minutes, [p["dice"][target] for p in fold["curve"]], style, color=colour,
                        marker=MARKERS[fold["fold"] % len(MARKERS)], markersize=4, label=f"{label}, fold {fold['fold']}")
    for ax, (target, bar) in zip(axes, TARGET.items()):
        ax.axhline(bar, color="grey", linewidth=0.8, linestyle=":", label="target")
        ax.set_title(f"{target}: Dice on the held-out fold")
        ax.set_xlabel("minutes of training (2 CPU cores)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean Dice, 5 held-out real cases")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "images" / "finetune-real-curve.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
