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
from ciml.data.synthetic import generate_case, write_case
from ciml.research.demo import scores_against
from ciml.inference.segment import SegmentRequest, segment
from ciml.data import read_array


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
            for m in card.modality_names:
                given = {k: v for k, v in inputs.items() if k != m}
                segment(SegmentRequest(model=model, inputs=given, out=str(out / m), maps="none", device=device))
                without = scores_against(out / m, truth, card)["dice"]
                for t in card.target_names:
                    rows.append({"case": case_dir.name, "target": t, "dice": dice[t], "modality": m,
                                 "share": report["targets"][t]["contributions"][m], "dice_without": without[t]})
    spearman = {}
    for t in card.target_names:
        share = np.array([r["share"] for r in rows if r["target"] == t])
        lost = np.array([r["dice"] - r["dice_without"] for r in rows if r["target"] == t])
        spearman[t] = float(spearmanr(share, lost).statistic)
    return {"model": model, "cases": cases, "seed": seed, "rows": rows, "spearman": spearman}


def relations_table(result: dict[str, Any]) -> str:
    """Per target: the mean share and mean Dice lost without each modality, and Spearman's rho."""
    targets = list(result["spearman"])
    modalities = list(dict.fromkeys(r["modality"] for r in result["rows"]))
    lines = ["target  " + "  ".join(f"{m:>22}" for m in modalities) + "  Spearman",
             "        " + "  ".join(f"{'share / Dice lost':>22}" for _ in modalities)]
    for t in targets:
        cells = []
        for m in modalities:
            rs = [r for r in result["rows"] if r["target"] == t and r["modality"] == m]
            share = np.mean([r["share"] for r in rs])
            lost = np.mean([r["dice"] - r["dice_without"] for r in rs])
            cells.append(f"{100 * share:9.1f}% / {lost:+.3f}")
        lines.append(f"{t:<8}" + "  ".join(f"{c:>22}" for c in cells) + f"  {result['spearman'][t]:8.2f}")
    return "\n".join(lines) + "\n"
