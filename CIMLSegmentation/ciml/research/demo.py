"""`ciml demo`: a sample case, segmented by the built-in model, with an overview picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.bundle import read_card
from ciml.data import label_to_regions, read_array
from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.evaluation.metrics import region_metrics
from ciml.inference.segment import SegmentRequest, segment
from ciml.progress import Progress
from ciml.research.overview import draw_overview

DEMO_SEED = 2026  # the built-in model was trained on seed 0's cases: the demo case is unseen


def run_demo(out: Path, model: Path, progress: Progress, size: str = "small") -> dict[str, Any]:
    """Make the case, segment it, draw the overview, score it against the known label."""


    card = read_card(model)
    case_id = case_ids("brats", 1)[0]
    case_dir = out / "case" / case_id
    if not case_dir.exists():
        write_case(generate_case("brats", 0, seed=DEMO_SEED, size=size), out / "case")
    inputs = {m: str(case_dir / f"{case_id}_{m}.nii.gz") for m in card.modality_names}
    report = segment(SegmentRequest(model=str(model), inputs=inputs, out=str(out / "result")), progress)

    label, grid = read_array(out / "result" / "segmentation.nii.gz", what="segmentation")
    truth, _ = read_array(case_dir / f"{case_id}_seg.nii.gz", what="label")
    scores = region_metrics(torch.from_numpy(label_to_regions(label.astype(np.int64), card)),
                            torch.from_numpy(label_to_regions(truth.astype(np.int64), card)),
                            card.target_names, grid.spacing)
    images = {m: read_array(p)[0] for m, p in inputs.items()}
    cams = {m: read_array(out / "result" / f"cam_{m}.nii.gz")[0] for m in card.modality_names
            if (out / "result" / f"cam_{m}.nii.gz").exists()}
    picture = draw_overview(images, label, cams, card, out / "overview.png", tuple(grid.spacing),
                            f"{card.name}: synthetic case {case_id} (seed {DEMO_SEED})")
    return {"report": report, "scores": scores, "overview": picture, "case": case_dir, "result": out / "result"}


def summary(result: dict[str, Any]) -> str:
    """What `ciml demo` prints."""
    report, scores = result["report"], result["scores"]
    lines = [f"Segmented {result['case'].name} with {report['model']['name']} on {report['device']} "
             f"in {sum(report['timings_s'].values()):.1f} s.", "",
             "target  Dice vs known label  HD95 (mm)  volume (ml)  contribution of each modality"]
    for t, v in report["targets"].items():
        shares = "  ".join(f"{m} {100 * s:4.1f}%" for m, s in v["contributions"].items())
        lines.append(f"{t:<6}  {scores['dice'][t]:>19.3f}  {scores['hd95'][t]:>9.1f}  {v['volume_ml']:>11.1f}  {shares}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += ["", f"overview picture: {result['overview']}", f"segmentation, heat maps, report: {result['result']}",
              f"input case: {result['case']}"]
    return "\n".join(lines) + "\n"
