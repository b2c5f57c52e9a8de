"""How a model's tumours compare in size with the truth on labelled cases, and what it misses.

Usage: .venv/bin/python scripts/size_gap.py --model BUNDLE --data REAL_DIR
           [--synthetic GLIOMA_DIR --synthetic-cases 120] [--out FILE]

Per case and target: sensitivity (share of the true region found), precision (share of the
drawn region that is true) and the drawn volume over the true one, on the label map `ciml
segment` would write. Per BraTS label (edema 2, core 1, enhancing 4): the median z of each
normalised sequence (the card's normalisation on the label's grid) in the voxels the model
found and in those it missed. With ``--synthetic``: the region volumes of the real labels against
those of generated cases. Prints a summary and writes everything to the result file with ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CIMLSegmentation"))

from ciml.bundle.weights import load_bundle  # noqa: E402
from ciml.data import list_cases  # noqa: E402
from ciml.data.case import load_record, load_reference_regions  # noqa: E402
from ciml.data.labels import label_to_regions  # noqa: E402
from ciml.data.normalize import normalize  # noqa: E402
from ciml.errors import CIMLError  # noqa: E402
from ciml.inference.sliding_window import predict_logits  # noqa: E402
from ciml.research.record import refuse_existing, script_envelope, write_record  # noqa: E402

LABELS = {"edema": 2, "core": 1, "enhancing": 4}
FOUND_BY = {"edema": "WT", "core": "TC", "enhancing": "ET"}  # the target whose map finds each label


def _array(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path)).transpose(2, 1, 0)


def region_volumes(label_files: list[str]) -> dict[str, list[float]]:
    """WT / TC / ET volumes in ml of BraTS label files (labels 1, 2, 4)."""
    out = {"WT": [], "TC": [], "ET": []}
    for f in label_files:
        image = sitk.ReadImage(f)
        a, ml = sitk.GetArrayFromImage(image), float(np.prod(image.GetSpacing())) / 1000
        for name, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
            out[name].append(float(np.isin(a, values).sum() * ml))
    return out


def percentiles(volumes: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(float(p), 1) for p in np.percentile(v, (10, 25, 50, 75, 90))] for k, v in volumes.items()}


def case_gap(bundle, record: dict, z_parts: dict) -> dict:
    """One case's sensitivity, precision and volume ratio per target; adds its voxels' z to ``z_parts``."""
    card = bundle.card
    case = load_record(card, record)
    logits = predict_logits(bundle.network, torch.from_numpy(case.image), card, torch.device("cpu"))
    painted = case.label_map(torch.sigmoid(logits).numpy(), card)
    drawn = label_to_regions(painted, card).astype(bool)
    truth = load_reference_regions(card, record, case.reference).astype(bool)
    row = {"case": case.case_id}
    for t, name in enumerate(card.target_names):
        hit = float((drawn[t] & truth[t]).sum())
        row[name] = {"sensitivity": hit / max(truth[t].sum(), 1), "precision": hit / max(drawn[t].sum(), 1),
                     "volume_ratio": float(drawn[t].sum()) / max(float(truth[t].sum()), 1.0)}
    raw = _array(record["label"])
    z = {m.name: normalize(_array(record[m.name]), m) for m in card.modalities}
    for label, value in LABELS.items():
        found = drawn[card.target_names.index(FOUND_BY[label])]
        for way, where in (("found", (raw == value) & found), ("missed", (raw == value) & ~found)):
            for m, values in z.items():
                z_parts.setdefault(f"{label} {way} {m}", []).append(values[where])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="labelled real cases (any layout ciml reads)")
    parser.add_argument("--synthetic", help="a folder of generated cases to compare the region volumes with")
    parser.add_argument("--synthetic-cases", type=int, default=120)
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        refuse_existing(args.out)  # before minutes of segmenting, not after
        bundle = load_bundle(args.model, "cpu")
    except CIMLError as error:
        print(f"size_gap: {error}", file=sys.stderr)
        return 2
    records = [r for r in list_cases(args.data, None) if r.get("label")]
    z_parts: dict[str, list[np.ndarray]] = {}
    cases = [case_gap(bundle, r, z_parts) for r in records]
    targets = bundle.card.target_names
    mean = {t: {k: round(float(np.mean([c[t][k] for c in cases])), 3) for k in ("sensitivity", "precision")}
            for t in targets}
    for t in targets:
        mean[t]["median_volume_ratio"] = round(float(np.median([c[t]["volume_ratio"] for c in cases])), 3)
    z = {k: round(float(np.median(np.concatenate(v))), 2) for k, v in z_parts.items() if sum(p.size for p in v)}
    result = {"model": args.model, "cases": cases, "mean": mean, "z_median": z,
              "real_volumes_ml": percentiles(region_volumes([r["label"] for r in records]))}
    if args.synthetic:
        labels = sorted(str(p) for p in Path(args.synthetic).glob("*/*_seg.nii.gz"))[: args.synthetic_cases]
        result["synthetic_volumes_ml"] = percentiles(region_volumes(labels))
        result["synthetic_cases"] = len(labels)
    for t in targets:
        print(f"{t}: sensitivity {mean[t]['sensitivity']:.3f}, precision {mean[t]['precision']:.3f}, "
              f"median drawn/true volume {mean[t]['median_volume_ratio']:.2f}")
    for label in LABELS:
        print(f"{label}: median z found / missed: " + ", ".join(
            f"{m} {z.get(f'{label} found {m}', float('nan')):.2f} / {z.get(f'{label} missed {m}', float('nan')):.2f}"
            for m in bundle.card.modality_names))
    for key in ("real_volumes_ml", "synthetic_volumes_ml"):
        if key in result:
            print(f"{key} (10/25/50/75/90th percentiles): {result[key]}")
    if args.out:
        write_record(script_envelope("size-gap", result, "size_gap.py"), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
