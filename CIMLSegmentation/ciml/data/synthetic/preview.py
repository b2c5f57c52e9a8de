"""Render a synthetic case as a PNG: one panel per modality, the label outlined on each.

Used for the figures of ``docs/sample-data.md``; regenerate them with::

    python -m ciml.data.synthetic.preview docs/images

matplotlib is imported here only (with the Agg backend), never by ``ciml.data.synthetic``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ciml.data.synthetic import generate_case
from ciml.data.synthetic.common import SyntheticCase
from ciml.io_utils import atomic_path

# Outline colour per label value, matching the presets' segment colours where they exist.
LABEL_COLOURS = {1: "#e64d33", 2: "#33cc33", 4: "#ffe61a"}
_OTHER_COLOUR = "#ff8000"
_UNLABELLED_COLOUR = "#4db3ff"  # dashed outline of the `others` mask (non-target candidates)


def _largest_slice(mask: np.ndarray, axis: int) -> int:
    """Index along ``axis`` of the slice with the most voxels of ``mask`` (the middle if none)."""
    other = tuple(a for a in range(3) if a != axis)
    counts = mask.sum(axis=other)
    return int(counts.argmax()) if counts.any() else mask.shape[axis] // 2


def render_case(case: SyntheticCase, path: str | Path, title: str | None = None,
                others: np.ndarray | None = None) -> Path:
    """Draw the axial (top row) and coronal (bottom row) slices through the largest
    cross-sections of the label (and ``others``), every modality side by side, each label
    value outlined in its colour.

    Args:
        case: the case to draw; images and label are ``(X, Y, Z)``.
        path: the PNG to write (replaced atomically).
        title: figure title; defaults to the case id.
        others: optional boolean ``(X, Y, Z)`` mask outlined dashed (e.g. the non-target
            candidates of the shapes task).
    """
    # optional, imported where used: Slicer's Python ships no matplotlib, and the backend
    # must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    names = list(case.images)
    views = [("axial", 2), ("coronal", 1)]
    fig, axes = plt.subplots(len(views), len(names), figsize=(3.0 * len(names), 6.2),
                             squeeze=False)
    values = [int(v) for v in np.unique(case.label) if v > 0]
    # One display window per modality (not per slice), so a slice without signal looks empty.
    windows = {name: np.percentile(case.images[name], (0.5, 99.9)) for name in names}
    for row, (view, axis) in enumerate(views):
        focus = case.label > 0 if others is None else (case.label > 0) | others
        index = _largest_slice(focus, axis)
        label_slice = np.take(case.label, index, axis=axis).T  # rows = second axis
        # Voxel aspect of the displayed plane: (row spacing) / (column spacing).
        aspect = case.spacing[1 if axis == 2 else 2] / case.spacing[0]
        for col, name in enumerate(names):
            ax = axes[row, col]
            image = np.take(case.images[name], index, axis=axis).T
            ax.imshow(image, cmap="gray", origin="lower", aspect=aspect, interpolation="nearest",
                      vmin=windows[name][0], vmax=windows[name][1])
            for value in values:
                mask = (label_slice == value).astype(float)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=LABEL_COLOURS.get(value, _OTHER_COLOUR),
                               linewidths=0.9)
            if others is not None and np.take(others, index, axis=axis).any():
                ax.contour(np.take(others, index, axis=axis).T.astype(float), levels=[0.5],
                           colors=_UNLABELLED_COLOUR, linewidths=0.9, linestyles="dashed")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(f"{view} {index}")
    legend = ", ".join(f"label {v}" for v in values) + ("; dashed: unlabelled" if others is not None else "")
    fig.suptitle(f"{title or case.case_id}  (outlines: {legend})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def render_docs_images(out_dir: str | Path) -> list[Path]:
    """Write ``sample_brats.png`` and ``sample_shapes.png`` (case 0, seed 0, small) to ``out_dir``."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shapes = generate_case("shapes", 0, seed=0, size="small")
    return [
        render_case(generate_case("brats", 0, seed=0, size="small"), out_dir / "sample_brats.png",
                    "synthetic BraTS, case 0, seed 0, small (2.5 mm)"),
        render_case(shapes, out_dir / "sample_shapes.png", "shapes task, case 0, seed 0, small (2 mm)",
                    others=(shapes.extras["candidates"] > 0) & (shapes.label == 0)),
    ]


if __name__ == "__main__":
    for written in render_docs_images(sys.argv[1] if len(sys.argv) > 1 else "docs/images"):
        print(written)
