"""The study's pictures: Dice bars with the seed spread, missing-modality bars, and one held-out
case segmented by every method beside CIML's per-modality effect maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ciml.config import preset
from ciml.research.study.plan import StudyPlan
from ciml.research.study.runner import figure_case, run_folder


def _pyplot():
    # optional, imported where used: Slicer's Python ships no matplotlib, and the backend
    # must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dice_bars(results: dict[str, Any], methods: tuple[str, ...], path: Path, title: str) -> Path | None:
    """Grouped bars: one group per target (and the mean), one bar per method, SD as error bars,
    each seed as a dot."""
    rows = [m for m in methods if results["methods"].get(m, {}).get("scores")]
    if not rows:
        return None
    plt = _pyplot()
    groups = list(results["methods"][rows[0]]["scores"]["dice"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * max(1, len(rows) / 3), 3.6))
    for i, m in enumerate(rows):
        dice = results["methods"][m]["scores"]["dice"]
        x = np.arange(len(groups)) + (i - (len(rows) - 1) / 2) * width
        ax.bar(x, [dice[g]["mean"] for g in groups], width, yerr=[dice[g]["sd"] for g in groups],
               capsize=2, label=m, color=plt.cm.tab10(i % 10))
        for xi, g in zip(x, groups):
            ax.scatter([xi] * len(dice[g]["values"]), dice[g]["values"], s=6, color="black", zorder=3)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("Dice (held-out cases)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def missing_bars(results: dict[str, Any], plan: StudyPlan, path: Path) -> Path | None:
    """Mean Dice over targets per model with all modalities and with each auxiliary missing."""
    rows = [m for m in plan.missing_models if results["methods"].get(m, {}).get("scores")]
    if not rows:
        return None
    plt = _pyplot()
    conditions = ["all", *plan.auxiliaries()]
    width = 0.8 / len(conditions)
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(rows), 3.6))
    for j, c in enumerate(conditions):
        means, sds = [], []
        for m in rows:
            entry = results["methods"][m]
            s = entry["scores"] if c == "all" else entry["missing"].get(c)
            means.append(s["dice"]["mean"]["mean"] if s else np.nan)
            sds.append(s["dice"]["mean"]["sd"] if s else 0.0)
        x = np.arange(len(rows)) + (j - (len(conditions) - 1) / 2) * width
        ax.bar(x, means, width, yerr=sds, capsize=2, label="all modalities" if c == "all" else f"without {c}",
               color=plt.cm.Set2(j % 8))
    ax.set_xticks(np.arange(len(rows)), rows, fontsize=8)
    ax.set_ylabel("mean Dice over targets")
    ax.set_ylim(0, 1)
    ax.set_title(f"{plan.task}: a modality missing at inference", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def validation_curves_figure(curves: dict[str, dict[int, list[tuple[int, float]]]], path: Path,
                             title: str) -> Path | None:
    """One panel per method: each seed's validation mean Dice against the training step."""
    if not curves:
        return None
    plt = _pyplot()
    columns = min(4, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.2 * rows), squeeze=False, sharey=True)
    for ax, (method, seeds) in zip(axes.flat, curves.items()):
        for i, (seed, points) in enumerate(sorted(seeds.items())):
            steps, dice = zip(*points)
            ax.plot(steps, dice, marker=".", lw=1, color=plt.cm.tab10(i % 10), label=f"seed {seed}")
        ax.set_title(method, fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, loc="lower right")
    fig.supxlabel("training step", fontsize=8)
    fig.supylabel("validation mean Dice", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _axial(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (Z, Y, X)


def case_figure(plan: StudyPlan, out: Path, path: Path) -> Path | None:
    """One held-out case, one axial slice, the one with the most labelled voxels: the ground truth, each
    method's segmentation (first seed), and CIML's signed effect map per modality, all over the primary."""

    card = preset(plan.task)
    case = figure_case(out)
    methods = [m for m in plan.methods if (run_folder(out, m, plan.seeds[0]) / "case" / "report.json").is_file()]
    if not methods:
        return None
    plt = _pyplot()
    truth = _axial(case / f"{case.name}_seg.nii.gz")
    z = int((truth > 0).sum(axis=(1, 2)).argmax())  # the slice with the most labelled voxels
    primary = card.subtasks[0].primary
    background = _axial(case / f"{case.name}_{primary}.nii.gz")[z]
    low, high = np.percentile(background, [1, 99.5])
    ciml_case = run_folder(out, "ciml", plan.seeds[0]) / "case"
    effects = [m for m in card.modality_names if (ciml_case / f"effect_{m}.nii.gz").is_file()]
    panels = [("ground truth", truth[z])] + [(m, _axial(run_folder(out, m, plan.seeds[0]) / "case"
                                                         / "segmentation.nii.gz")[z]) for m in methods]
    columns = len(panels) + len(effects)
    fig, axes = plt.subplots(1, columns, figsize=(2.0 * columns, 2.5), squeeze=False)
    for ax, (title, label) in zip(axes[0], panels):
        ax.imshow(background, cmap="gray", vmin=low, vmax=high)
        for t in card.targets:
            mask = np.isin(label, t.includes)
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[t.color], linewidths=0.8)
        ax.set_title(title, fontsize=8)
    for ax, m in zip(axes[0, len(panels):], effects):
        ax.imshow(background, cmap="gray", vmin=low, vmax=high)
        # signed: red where the modality adds to the target, blue where it removes
        ax.imshow(np.ma.masked_inside(_axial(ciml_case / f"effect_{m}.nii.gz")[z], -0.05, 0.05), cmap="RdBu_r",
                  vmin=-1, vmax=1, alpha=0.8)
        ax.set_title(f"CIML effect of {m}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{plan.task}: held-out case {case.name}, axial slice {z} (primary {primary})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
