"""Whether the relations table says what withholding a modality does: ``ciml benchmark relations``.

On unseen sample cases, a bundle's reported shares (``report.json``'s ``contributions``: each
modality's part of the summed effects of withholding it, computed in one pass) are set beside
real runs of ``ciml segment`` without that modality, scored against the known label. Per target,
the rank correlation (Spearman) between the share and the Dice lost without the modality, over
every case and modality, says whether the table ranks the modalities as the real runs do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ciml.bundle import read_card
from ciml.data import read_array
from ciml.data.synthetic import generate_case, write_case
from ciml.inference.segment import SegmentRequest, segment
from ciml.research.demo import scores_against, scores_without_each


def measure_relations(model: str, cases: int, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Shares and Dice with and without each modality on ``cases`` unseen brats sample cases.

    Returns ``{"model", "cases", "seed", "rows": [{"case", "target", "dice", "modality", "share",
    "dice_without"}], "spearman": {target: rho}}``.
    """
    card = read_card(model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ciml-relations-") as tmp:
        for index in range(cases):
            case_dir = write_case(generate_case("brats", index, seed=seed), Path(tmp) / "cases")
            inputs = {m: str(case_dir / f"{case_dir.name}_{m}.nii.gz") for m in card.modality_names}
            truth, _ = read_array(case_dir / f"{case_dir.name}_seg.nii.gz", what="label")
            out = Path(tmp) / f"{index}"
            report = segment(SegmentRequest(model=model, inputs=inputs, out=str(out / "all"), maps="effects",
                                            device=device))
            dice = scores_against(out / "all", truth, card)["dice"]
            for m, without in scores_without_each(model, inputs, truth, card, out, device).items():
                for t in card.target_names:
                    rows.append({"case": case_dir.name, "target": t, "dice": dice[t], "modality": m,
                                 "share": report["targets"][t]["contributions"][m], "dice_without": without[t]})
    spearman = {}
    for t in card.target_names:
        share = np.array([r["share"] for r in rows if r["target"] == t])
        lost = np.array([r["dice"] - r["dice_without"] for r in rows if r["target"] == t])
        spearman[t] = float(spearmanr(share, lost).statistic)
    return {"model": model, "cases": cases, "seed": seed, "rows": rows, "spearman": spearman}


def relations_summary(result: dict[str, Any]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{target: {modality: (mean share, mean Dice lost without it)}}`` over the cases; the
    terminal table and the docs both read this."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for t in result["spearman"]:
        for m in dict.fromkeys(r["modality"] for r in result["rows"]):
            rs = [r for r in result["rows"] if r["target"] == t and r["modality"] == m]
            summary.setdefault(t, {})[m] = (float(np.mean([r["share"] for r in rs])),
                                            float(np.mean([r["dice"] - r["dice_without"] for r in rs])))
    return summary


def relations_table(result: dict[str, Any]) -> str:
    """Per target: the mean share and mean Dice lost without each modality, and Spearman's rho."""
    summary = relations_summary(result)
    modalities = list(next(iter(summary.values())))
    lines = ["target  " + "  ".join(f"{m:>22}" for m in modalities) + "  Spearman",
             "        " + "  ".join(f"{'share / Dice lost':>22}" for _ in modalities)]
    for t, by_modality in summary.items():
        cells = [f"{100 * share:9.1f}% / {lost:+.3f}" for share, lost in by_modality.values()]
        lines.append(f"{t:<8}" + "  ".join(f"{c:>22}" for c in cells) + f"  {result['spearman'][t]:8.2f}")
    return "\n".join(lines) + "\n"
