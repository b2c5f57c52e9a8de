"""`ciml demo`: a sample case, segmented by the built-in model, with an overview picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.bundle import read_card
from ciml.choices import DEMO_SEED
from ciml.data import label_to_regions, read_array
from ciml.data.synthetic import case_ids, generate_case, write_case
from ciml.evaluation.metrics import region_metrics
from ciml.inference.segment import SegmentRequest, segment
from ciml.progress import Progress
from ciml.research.overview import draw_overview


def run_demo(out: Path, model: Path, progress: Progress, size: str = "small",
             seed: int = DEMO_SEED) -> dict[str, Any]:
    """Make the case, segment it, draw the overview, score it against the known label, and score
    it again with each modality withheld (real runs without it), to set beside the relations."""
    card = read_card(model)
    case_id = case_ids("brats", 1)[0]
    case_dir = out / "case" / case_id
    if not case_dir.exists():
        write_case(generate_case("brats", 0, seed=seed, size=size), out / "case")
    inputs = {m: str(case_dir / f"{case_id}_{m}.nii.gz") for m in card.modality_names}
    truth, _ = read_array(case_dir / f"{case_id}_seg.nii.gz", what="label")
    report = segment(SegmentRequest(model=str(model), inputs=inputs, out=str(out / "result")), progress)
    scores = scores_against(out / "result", truth, card)
    without = scores_without_each(str(model), inputs, truth, card, out)
    label, grid = read_array(out / "result" / "segmentation.nii.gz", what="segmentation")
    images = {m: read_array(p)[0] for m, p in inputs.items()}
    effects = {m: read_array(out / "result" / f"effect_{m}.nii.gz")[0] for m in card.modality_names
               if (out / "result" / f"effect_{m}.nii.gz").exists()}
    picture = draw_overview(images, label, effects, card, out / "overview.png", tuple(grid.spacing),
                            f"{card.name}: synthetic case {case_id} (seed {seed})")
    return {"report": report, "scores": scores, "without": without, "overview": picture, "case": case_dir,
            "result": out / "result"}


def scores_without_each(model: str, inputs: dict[str, str], truth: np.ndarray, card, out: Path,
                        device: str = "auto") -> dict[str, dict[str, float]]:
    """Dice per target of real runs of ``ciml segment`` without each modality (written to
    ``out/without-<modality>``), against the known label; a modality without which no sub-task
    has an input is left out."""
    without = {}
    for m in card.modality_names:
        given = {k: v for k, v in inputs.items() if k != m}
        if any(s.primary in given or set(s.auxiliaries) & set(given) for s in card.subtasks):
            segment(SegmentRequest(model=model, inputs=given, out=str(out / f"without-{m}"), maps="none",
                                   device=device))
            without[m] = scores_against(out / f"without-{m}", truth, card)["dice"]
    return without


def scores_against(folder: Path, truth: np.ndarray, card) -> dict[str, dict[str, float]]:
    """Dice and HD95 per target of the segmentation in ``folder`` against the known label."""
    label, grid = read_array(folder / "segmentation.nii.gz", what="segmentation")
    return region_metrics(torch.from_numpy(label_to_regions(label.astype(np.int64), card)),
                          torch.from_numpy(label_to_regions(truth.astype(np.int64), card)),
                          card.target_names, grid.spacing)


def summary(result: dict[str, Any]) -> str:
    """What `ciml demo` prints: the scores, and per target each modality's reported share beside
    the Dice (against the known label) of a real run without that modality."""
    report, scores, without = result["report"], result["scores"], result["without"]
    lines = [f"Segmented {result['case'].name} with {report['model']['name']} on {report['device']} "
             f"in {sum(report['timings_s'].values()):.1f} s.", "",
             "target  Dice vs known label  HD95 (mm)  volume (ml)"]
    for t, v in report["targets"].items():
        lines.append(f"{t:<6}  {scores['dice'][t]:>19.3f}  {scores['hd95'][t]:>9.1f}  {v['volume_ml']:>11.1f}")
    lines += ["", "What each modality does (share: its part of the summed effects of withholding each modality;",
              "Dice without: against the known label, from a real run without that modality)"]
    for t, v in report["targets"].items():
        cells = [f"{m} {100 * share:5.1f}% (Dice without {without[m][t]:.3f})" if m in without
                 else f"{m} {100 * share:5.1f}%" for m, share in v["contributions"].items()]
        lines.append(f"{t:<6}  " + "   ".join(cells))
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += ["", f"overview picture: {result['overview']}", f"segmentation, effect maps, report: {result['result']}",
              f"input case: {result['case']}"]
    return "\n".join(lines) + "\n"
