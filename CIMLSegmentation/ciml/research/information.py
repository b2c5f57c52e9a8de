"""`ciml benchmark information`: does a trained model take each piece of information from the
modality that carries it?

The `brats` phantom hides structures from each target's primary (docs/sample-data.md, "What each
primary misses"): T2 tells faint edema, satellites and FLAIR artefacts apart for WT, T2 and FLAIR
tell a cyst from necrosis and show the non-enhancing core for TC, T1 tells haemorrhage from
enhancement for ET. On unseen cases, each such structure is segmented with every modality and
with each modality withheld (the model's own ``present`` mask, as ``ciml segment`` does without
a volume). A model that uses an auxiliary where it carries information gets the structure right
with every modality, and loses it (its prediction there changes) when that auxiliary is withheld,
while withholding an auxiliary that shows nothing there changes little.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.bundle.weights import load_bundle
from ciml.data.case import load_case
from ciml.data.synthetic import generate_case, write_case
from ciml.data.synthetic.brats_tumour import REGION, REGION_LABEL, TARGET_LABELS
from ciml.inference.effects import predict_withheld
from ciml.research.targets import UNSEEN_SEED

# structure -> (the target it decides, the auxiliaries that show it; docs/sample-data.md)
TELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "faint_edema": ("WT", ("t2",)),
    "satellite": ("WT", ("t2",)),
    "flair_artefact": ("WT", ("t2",)),
    "non_enhancing": ("TC", ("t2",)),
    "cyst": ("TC", ("t2", "flair")),
    "haemorrhage": ("ET", ("t1",)),
}


def structure_truth(structure: str) -> bool:
    """Whether a structure belongs to the target it decides (a cyst is not tumour core...)."""
    target, _ = TELLS[structure]
    return REGION_LABEL[structure] in TARGET_LABELS[target]


def case_information(network: torch.nn.Module, card, folder: Path, regions: np.ndarray,
                     device: torch.device) -> dict[str, dict[str, Any]]:
    """One case: per structure present, its voxel count, the share of its voxels predicted right
    with every modality, and per withheld modality the share predicted right and the share whose
    prediction changed.

    Args:
        network: a CIML network in eval mode on ``device``.
        card: its card.
        folder: the case folder (BraTS layout) the regions belong to.
        regions: (X, Y, Z) region codes of the case (``extras["regions"]``) on the images' grid.
        device: where the windows run.
    """
    images = {m: folder / f"{folder.name}_{m}.nii.gz" for m in card.modality_names}
    case = load_case(card, images)
    logits, withheld = predict_withheld(network, torch.from_numpy(case.image), card, device)
    threshold = card.inference.threshold
    full = case.to_reference(torch.sigmoid(logits).numpy()) > threshold
    without = {m: case.to_reference(torch.sigmoid(withheld[i]).numpy()) > threshold
               for i, m in enumerate(card.modality_names)}
    result = {}
    for structure, (target, _) in TELLS.items():
        mask = regions == REGION[structure]
        if not mask.any():
            continue
        t = card.target_index(target)
        truth = structure_truth(structure)
        result[structure] = {
            "voxels": int(mask.sum()), "right": float((full[t][mask] == truth).mean()),
            "right_without": {m: float((w[t][mask] == truth).mean()) for m, w in without.items()},
            "changed_without": {m: float((w[t][mask] != full[t][mask]).mean()) for m, w in without.items()}}
    return result


def measure_information(model: str, cases: int = 8, seed: int = UNSEEN_SEED, variation: str = "standard",
                        device: str = "cpu") -> dict[str, Any]:
    """:func:`case_information` over ``cases`` unseen `brats` sample cases (small).

    Returns:
        ``{"model", "cases", "seed", "variation", "structures": {structure: {"target",
        "tellers", "truth", "cases", "right": [per case], "right_without": {m: [...]},
        "changed_without": {m: [...]}}}}``.
    """
    bundle = load_bundle(model)
    network, card = bundle.network.eval(), bundle.card
    torch_device = torch.device(device)
    network.to(torch_device)
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ciml-information-") as work:
        for index in range(cases):
            case = generate_case("brats", index, seed=seed, variation=variation)
            folder = write_case(case, work)
            for structure, row in case_information(network, card, folder, case.extras["regions"],
                                                   torch_device).items():
                target, tellers = TELLS[structure]
                entry = found.setdefault(structure, {
                    "target": target, "tellers": list(tellers), "truth": structure_truth(structure),
                    "cases": 0, "right": [], "right_without": {}, "changed_without": {}})
                entry["cases"] += 1
                entry["right"].append(row["right"])
                for key in ("right_without", "changed_without"):
                    for m, value in row[key].items():
                        entry[key].setdefault(m, []).append(value)
    return {"model": model, "cases": cases, "seed": seed, "variation": variation, "structures": found}


def structure_summary(result: dict[str, Any], primaries: dict[str, str]) -> list[dict[str, Any]]:
    """Per structure, means over the cases that have it: the share of its voxels right with every
    modality (``right``) and without the modality that shows it (``right_without``, the lowest
    over its tellers), the share changed without it (``changed``, the highest), and the most any
    other auxiliary changes (``other``, by ``other_modality``). The terminal table and the docs
    both read this."""
    rows = []
    for structure, e in result["structures"].items():
        tellers, target = e["tellers"], e["target"]
        others = [m for m in e["changed_without"] if m not in tellers and m != primaries[target]]
        other, by = max(((statistics.fmean(e["changed_without"][m]), m) for m in others), default=(0.0, "-"))
        rows.append({"structure": structure, "target": target, "truth": e["truth"], "cases": e["cases"],
                     "tellers": tellers, "right": statistics.fmean(e["right"]),
                     "right_without": min(statistics.fmean(e["right_without"][m]) for m in tellers),
                     "changed": max(statistics.fmean(e["changed_without"][m]) for m in tellers),
                     "other": other, "other_modality": by})
    return rows


def information_table(result: dict[str, Any], primaries: dict[str, str]) -> str:
    """The measurement as text (:func:`structure_summary`)."""
    rows = [["structure", "target", "in target", "cases", "right", "teller", "right w/o teller",
             "changed w/o teller", "most changed w/o another auxiliary"]]
    for s in structure_summary(result, primaries):
        rows.append([s["structure"], s["target"], "yes" if s["truth"] else "no", str(s["cases"]),
                     f"{s['right']:.3f}", "/".join(s["tellers"]), f"{s['right_without']:.3f}",
                     f"{s['changed']:.3f}", f"{s['other']:.3f} ({s['other_modality']})"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"what each modality tells: {result['model']}, {result['cases']} unseen brats cases "
             f"(seed {result['seed']}, {result['variation']})"]
    lines += ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    return "\n".join(lines) + "\n"
