"""The overview picture of a segmented case: every modality in three planes, the segmentation
outlined, and each modality's signed effect map (what withholding it changes) beside it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ciml.config import ModelCard


def tumour_centre(label: np.ndarray) -> tuple[int, ...]:
    """Voxel index of the segmentation's centre of mass (the volume's centre if empty)."""
    if not label.any():
        return tuple(s // 2 for s in label.shape)
    return tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))


def _planes(volume: np.ndarray, centre: tuple[int, ...]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through ``centre`` of an (X, Y, Z) volume, display-oriented."""
    x, y, z = centre
    return [volume[:, :, z].T[::-1], volume[:, y, :].T[::-1], volume[x, :, :].T[::-1]]


def draw_overview(images: Mapping[str, np.ndarray], label: np.ndarray, cams: Mapping[str, np.ndarray],
                  card: ModelCard, path: Path, spacing: tuple[float, ...] = (1.0, 1.0, 1.0), title: str = "") -> Path:
    """Write the overview PNG.

    Args:
        images: modality -> (X, Y, Z) intensities on the reference grid.
        label: (X, Y, Z) label map with the card's target labels.
        cams: modality -> (X, Y, Z) effect map in -1..1 (probability with all modalities minus
            without this one; may be empty).
        card: the model card (target colours and labels).
        path: the PNG to write.
        spacing: voxel spacing, so that planes keep their physical aspect.
    """
    # optional, imported where used: Slicer's Python ships no matplotlib, and the backend
    # must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centre = tumour_centre(label)
    views = ("axial", "coronal", "sagittal")
    aspects = (spacing[1] / spacing[0], spacing[2] / spacing[0], spacing[2] / spacing[1])
    columns = 6 if cams else 3
    names = list(images)
    fig, axes = plt.subplots(len(names), columns, figsize=(2.2 * columns, 2.3 * len(names) + 0.6), squeeze=False)
    label_planes = _planes(label, centre)
    for row, m in enumerate(names):
        image_planes = _planes(images[m], centre)
        low, high = np.percentile(images[m][images[m] != 0] if images[m].any() else images[m], [1, 99.5])
        cam_planes = _planes(cams[m], centre) if m in cams else None
        for v in range(3):
            axes[row, v].imshow(image_planes[v], cmap="gray", vmin=low, vmax=high, aspect=aspects[v])
            for t in card.targets:
                mask = np.isin(label_planes[v], t.includes)
                if mask.any():
                    axes[row, v].contour(mask, levels=[0.5], colors=[t.color], linewidths=0.9)
            if cam_planes is not None:
                ax = axes[row, 3 + v]
                ax.imshow(image_planes[v], cmap="gray", vmin=low, vmax=high, aspect=aspects[v])
                # diverging: red where the modality adds to a target, blue where it suppresses one
                ax.imshow(np.ma.masked_inside(cam_planes[v], -0.05, 0.05), cmap="RdBu_r", vmin=-1, vmax=1,
                          alpha=0.8, aspect=aspects[v])
        axes[row, 0].set_ylabel(m, fontsize=11)
    for v, view in enumerate(views):
        axes[0, v].set_title(f"{view} + segmentation", fontsize=9)
        if cams:
            axes[0, 3 + v].set_title(f"{view} effect (+ adds, - removes)", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    handles = [plt.Line2D([], [], color=t.color, lw=2, label=t.name) for t in card.targets]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
