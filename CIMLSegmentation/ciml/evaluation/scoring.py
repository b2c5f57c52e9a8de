"""Scoring a network on whole cases: sliding-window prediction, then Dice and HD95 per target."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ciml.config import ModelCard
from ciml.evaluation.metrics import mean_metrics, region_metrics
from ciml.inference.sliding_window import predict_logits


def score_case(network: torch.nn.Module, card: ModelCard, sample: Mapping[str, Any],
               device: torch.device) -> dict[str, Any]:
    """Dice and HD95 of one labelled sample (a validation dataset item, without batch axis).

    Args:
        network: in eval mode on ``device``.
        card: the model card (targets, threshold, window).
        sample: ``{"case", "image" (M, *S), "label" (T, *S), "present" (M,), "spacing"}``.
        device: where the windows run.
    """
    image = torch.as_tensor(sample["image"])
    present = torch.as_tensor(sample["present"]).float() if "present" in sample else None
    if present is not None and bool(present.all()):
        present = None
    logits = predict_logits(network, image, card, device, present=present)
    prediction = torch.sigmoid(logits) > card.inference.threshold
    spacing = [float(s) for s in sample["spacing"]] if "spacing" in sample else None
    scores = region_metrics(prediction, torch.as_tensor(sample["label"]), card.target_names, spacing)
    return {"case": str(sample.get("case", "")), **scores}


def score_cases(network: torch.nn.Module, card: ModelCard, samples: Iterable[Mapping[str, Any]],
                device: torch.device, on_case: Callable[[int], None] | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Per-case scores and their means (``{"dice": {target: mean}, "hd95": {...}}``)."""
    per_case = []
    for i, sample in enumerate(samples):
        per_case.append(score_case(network, card, sample, device))
        if on_case is not None:
            on_case(i + 1)
    means = mean_metrics([{k: c[k] for k in ("dice", "hd95")} for c in per_case])
    return per_case, means


def mean_dice(means: Mapping[str, Mapping[str, float]]) -> float:
    """The one number validation ranks checkpoints by: Dice averaged over targets."""
    dice = means.get("dice", {})
    return float(sum(dice.values()) / len(dice)) if dice else 0.0
