"""`ciml evaluate`'s job: score a bundle on labelled cases, per case and target, and tabulate.

Each case is scored on its reference grid (the label's, and the BraTS challenge's 1 mm grid),
against the label map ``ciml segment`` would write: the predicted regions are brought back from
the working grid, thresholded and painted as :meth:`~ciml.data.case.Case.label_map` does, then
read back as regions (so WT includes every voxel painted TC or ET). Validation during training
scores on the working grid instead (:mod:`ciml.evaluation.scoring`), which is cheaper.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ciml.bundle.weights import Bundle
from ciml.config import ModelCard
from ciml.data.case import load_record, load_reference_regions
from ciml.data.geometry import nonzero_box
from ciml.data.labels import label_to_regions
from ciml.evaluation.lesions import lesion_wise
from ciml.evaluation.metrics import mean_metrics, region_metrics
from ciml.inference.sliding_window import predict_logits
from ciml.progress import Progress

log = logging.getLogger(__name__)

METRICS = ("dice", "hd95", "lesion_dice", "lesion_hd95")
"""The per-target scores of a case, as the report's keys: plain Dice and HD95 (the whole
region), then BraTS 2023's lesion-wise ones (:mod:`ciml.evaluation.lesions`)."""


def evaluate(bundle: Bundle, records: list[dict[str, Any]], device, progress: Progress,
             allow_missing: bool = False) -> dict[str, Any]:
    """Score every record.

    Args:
        bundle: the model (network in eval mode on ``device``, card).
        records: labelled case records (:func:`ciml.data.list_cases`).
        device: where the windows run.
        progress: told after each case.
        allow_missing: zero-fill (and tell the network about) modalities a record lacks.

    Returns:
        ``{"model", "training", "cases": [{"case", "dice", "hd95", "lesion_dice", "lesion_hd95":
        {target: value}, "lesions": {target: counts}}], "mean": {metric: {target: value}}}``;
        ``training``: how the bundle was made (its provenance: data, steps, the bundle it started from).
    """
    per_case = []
    for i, record in enumerate(records):
        per_case.append(score_record(bundle.network, bundle.card, record, device, allow_missing))
        progress.update("evaluating", (i + 1) / len(records), case=i + 1)
    means = mean_metrics([{k: c[k] for k in METRICS} for c in per_case])
    provenance = bundle.metadata.get("provenance", {})
    training = {k: provenance[k] for k in ("data", "steps", "init", "seed") if k in provenance}
    return {"model": str(bundle.path), "training": training, "cases": per_case, "mean": means}


def score_record(network: torch.nn.Module, card: ModelCard, record: dict[str, Any], device,
                 allow_missing: bool = False) -> dict[str, Any]:
    """Plain and lesion-wise Dice and HD95 of one labelled case record, per target, on its
    reference grid (see the module's docstring)."""
    case = load_record(card, record, allow_missing=allow_missing)
    for warning in case.warnings:
        log.warning(warning)
    present = torch.as_tensor(case.present, dtype=torch.float32)
    logits = predict_logits(network, torch.from_numpy(case.image), card, device,
                            present=None if bool(present.all()) else present)
    painted = case.label_map(torch.sigmoid(logits).numpy(), card)
    prediction = label_to_regions(painted, card).astype(bool)
    label = load_reference_regions(card, record, case.reference)
    spacing = case.reference.spacing
    pred_box, label_box = _around(prediction, label)
    scores = region_metrics(torch.from_numpy(pred_box), torch.from_numpy(label_box), card.target_names, spacing)
    lesions = {name: lesion_wise(prediction[t], label[t], spacing) for t, name in enumerate(card.target_names)}
    return {"case": case.case_id, **scores,
            "lesion_dice": {name: found["dice"] for name, found in lesions.items()},
            "lesion_hd95": {name: found["hd95"] for name, found in lesions.items()},
            "lesions": {name: {k: v for k, v in found.items() if k not in ("dice", "hd95")}
                        for name, found in lesions.items()}}


def _around(*masks: np.ndarray, margin: int = 2) -> tuple[np.ndarray, ...]:
    """``(T, X, Y, Z)`` masks cut to the box around every voxel of any of them, with a margin so
    that no surface lies on the box's edge: Dice and HD95 are the same, computed on far fewer voxels."""
    anywhere = np.logical_or.reduce([m.any(axis=0) for m in masks])
    if not anywhere.any():
        return tuple(m[:, :1, :1, :1] for m in masks)
    box = nonzero_box(anywhere)
    box = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, anywhere.shape))
    return tuple(np.ascontiguousarray(m[(slice(None), *box)]) for m in masks)


def table(report: dict[str, Any]) -> str:
    """The scores as a plain-text table: one row per case, then the mean.

    Columns: plain Dice and HD95 per target, then the lesion-wise ones (``LDice``, ``LHD95``).
    """
    targets = list(report["mean"]["dice"])
    heads = {"dice": "Dice", "hd95": "HD95", "lesion_dice": "LDice", "lesion_hd95": "LHD95"}
    metrics = [m for m in METRICS if m in report["mean"]]
    header = ["case"] + [f"{heads[m]} {t}" for m in metrics for t in targets]

    def cells(scores: dict[str, dict[str, float]]) -> list[str]:
        return [f"{scores[m][t]:.3f}" if "dice" in m else f"{scores[m][t]:.1f}" for m in metrics for t in targets]

    rows = [[c["case"]] + cells(c) for c in report["cases"]]
    rows.append(["mean"] + cells(report["mean"]))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), *(line(r) for r in rows[:-1]), "-" * len(line(header)), line(rows[-1])]) + "\n"
