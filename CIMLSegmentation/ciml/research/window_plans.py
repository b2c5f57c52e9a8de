"""`ciml benchmark plans`: how the window plan changes a trained model's accuracy and cost.

Every plan of :data:`~ciml.research.targets.WINDOW_PLANS` segments the same unseen sample cases
with the same bundle; each is scored against the labels (Dice per target, the user's path:
:func:`~ciml.evaluation.scoring.score_case`) and against the card's own plan (what ``ciml
segment`` does with this bundle), and timed. This is the measurement behind
the card's ``inference`` defaults (docs/BENCHMARKS.md, "Window plans").
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import replace
from typing import Any

import torch

from ciml.bundle.weights import load_bundle
from ciml.config import ModelCard
from ciml.data import list_cases
from ciml.data.datasets import build_dataset, validation_transforms
from ciml.data.synthetic import write_cases
from ciml.evaluation.metrics import region_metrics
from ciml.inference.sliding_window import predict_logits
from ciml.inference.windows import plan_windows, window_count
from ciml.research.targets import UNSEEN_SEED, WINDOW_PLANS


def plan_card(card: ModelCard, overrides: dict[str, Any], image: torch.Tensor) -> ModelCard:
    """The card with a plan's ``inference`` overrides; ``window_voxels: "box"`` is the voxels of
    the body box (or of the whole image when not cropped), rounded up to the network's window
    multiple: the whole box as one window."""
    values = dict(overrides)
    if values.get("window_voxels") == "box":
        multiple = card.network.window_multiple
        tiles = replace(card, inference=replace(card.inference, **{**values, "window_voxels": 0}))
        box = plan_windows(image, tiles).shape
        values["window_voxels"] = math.prod(math.ceil(b / multiple) * multiple for b in box)
    return replace(card, inference=replace(card.inference, **values))


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def compare_plans(model: str, cases: int = 6, seed: int = UNSEEN_SEED, kind: str = "brats",
                  size: str = "small") -> dict[str, Any]:
    """Score and time every window plan on ``cases`` unseen sample cases.

    Args:
        model: a bundle folder (its card is the starting point of every plan).
        cases: how many sample cases (generated with ``seed``, not the training seed).
        seed: the sample-data seed.
        kind, size: the sample data (``ciml sample-data``'s ``--kind`` and ``--size``).

    Returns:
        ``{"model", "cases", "plans": {name: {"dice": {target: [per case]}, "agreement":
        {target: [per case]}, "seconds": [per case], "windows": [per case]}}}``; agreement is
        the Dice between the plan's and the card's own plan's segmentation.
    """
    bundle = load_bundle(model)
    network, card = bundle.network.eval(), bundle.card
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="ciml-plans-") as work:
        write_cases(kind, cases, work, seed=seed, size=size)
        samples = list(build_dataset(list_cases(work), validation_transforms(card), cache="none"))
    plans: dict[str, dict[str, Any]] = {name: {"dice": {t: [] for t in card.target_names},
                                               "agreement": {t: [] for t in card.target_names},
                                               "seconds": [], "windows": []} for name in WINDOW_PLANS}
    for sample in samples:
        image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
        first = None
        for name, overrides in WINDOW_PLANS.items():
            variant = plan_card(card, overrides, image)
            start = time.perf_counter()
            prediction = torch.sigmoid(predict_logits(network, image, variant, cpu)) > card.inference.threshold
            row = plans[name]
            row["seconds"].append(time.perf_counter() - start)
            plan = plan_windows(image, variant)
            row["windows"].append(window_count(plan.shape, plan.roi_size, plan.overlap))
            scores = region_metrics(prediction, label, card.target_names, None)
            first = prediction if first is None else first
            for i, t in enumerate(card.target_names):
                row["dice"][t].append(scores["dice"][t])
                row["agreement"][t].append(_dice(prediction[i], first[i]))
    return {"model": model, "cases": cases, "seed": seed, "kind": kind, "size": size, "plans": plans}


def plans_table(result: dict[str, Any]) -> str:
    """The comparison as text: per plan, mean Dice (and its spread over cases) per target, the
    lowest agreement with the card's own plan, windows and seconds per case."""
    first = next(iter(result["plans"].values()))
    targets = list(first["dice"])
    lines = [f"window plans: {result['model']}, {result['cases']} unseen {result['kind']} cases "
             f"(seed {result['seed']}, {result['size']})",
             "plan".ljust(52) + "".join(f"Dice {t}".rjust(16) for t in targets)
             + "  min agreement  windows  s/case"]
    for name, row in result["plans"].items():
        dice = "".join(f"{statistics.mean(row['dice'][t]):.3f} ± {statistics.pstdev(row['dice'][t]):.3f}".rjust(16)
                       for t in targets)
        agreement = min(min(row["agreement"][t]) for t in targets)
        lines.append(f"{name.ljust(52)}{dice}  {agreement:13.3f}  {statistics.mean(row['windows']):7.1f}"
                     f"  {statistics.mean(row['seconds']):6.2f}")
    return "\n".join(lines) + "\n"
