"""Draws the extension icon (128x128 PNG): a primary modality receiving gated messages."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402


def draw(path: str) -> None:
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.axis("off")
    ax.add_patch(Circle((0.5, 0.5), 0.47, color="#1d2b44"))
    for (x, y), colour in (((0.27, 0.72), "#4fa3e0"), ((0.27, 0.28), "#9b6fd6")):  # auxiliaries
        ax.add_patch(Circle((x, y), 0.13, color=colour))
    for y in (0.72, 0.28):
        ax.add_patch(FancyArrowPatch((0.38, y), (0.6, 0.5 + (y - 0.5) * 0.3), arrowstyle="-|>",
                                     mutation_scale=10, color="white", lw=1.6))
    ax.add_patch(Circle((0.7, 0.5), 0.17, color="#f5a623"))
    ax.add_patch(Circle((0.7, 0.5), 0.08, color="#d0021b"))
    fig.savefig(path, transparent=True)


if __name__ == "__main__":
    draw(sys.argv[1])
