"""`ciml info --model DIR`: a readable summary of a model bundle, after checking it.

`ciml info --gates --model DIR --case CASE`: what each information gate of a CIML bundle passes
on, measured on one window of one case (:mod:`ciml.nn.gate_diagnostics`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.bundle.weights import Bundle, load_bundle
from ciml.config import ModelCard
from ciml.data import LAYOUTS, DataError, load_case
from ciml.errors import CIMLError
from ciml.nn.gate_diagnostics import centred_window, format_gate_table, gate_diagnostics

# Case-folder layouts `--case` accepts, in the order tried (BraTS 2023 names first: the 2020
# layout also takes any <case>_<name>.nii.gz, as the sample data is written).
_CASE_LAYOUTS = ("brats2023", "brats2020")


def run(args: argparse.Namespace) -> int:
    if args.case and not args.gates:
        raise CIMLError("--case is only used with --gates")
    if args.gates and not args.case:
        raise CIMLError("--gates needs --case DIR (a case folder in the BraTS layout) to measure the gates on")
    bundle = load_bundle(args.model)
    if args.gates:
        return _gates(bundle, Path(args.case), args.json)
    if args.json:
        sys.stdout.write(json.dumps(bundle.metadata, indent=2) + "\n")
    else:
        sys.stdout.write(describe(bundle.path, bundle.card, bundle.metadata))
    return 0


def _rows(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _windows(card) -> str:
    """The card's window plan in words (ciml.inference.windows)."""
    inf = card.inference
    where = f"the body's box (margin {inf.crop_margin})" if inf.crop else "the whole image"
    if inf.window_voxels == 0:
        return f"{where} in windows {list(inf.roi_size)}"
    limit = "the training patch's" if inf.window_voxels is None else f"{inf.window_voxels:,}"
    return f"{where} in windows of at most {limit} voxels"


def _hex(color: Any) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in color)


def describe(path: Any, card: ModelCard, meta: dict[str, Any]) -> str:
    """The summary ``ciml info`` prints, as text."""
    w = meta["weights"]
    lines = [
        f"Bundle {path}",
        f"  model       {card.name} ({meta['arch']}, {meta.get('parameters', 0):,} parameters)",
        f"  about       {card.description or '-'}",
        f"  format      {meta['format']} v{meta['format_version']}, written by ciml "
        f"{meta.get('ciml_version', '?')} on {meta.get('created', '?')}",
        f"  weights     {w.get('file')}, {w.get('bytes', 0) / 1e6:.1f} MB, "
        f"sha256 {str(w.get('sha256'))[:16]}... verified",
        "Modalities (input order)",
        *_rows([[m.name, m.kind, m.normalization, "" if m.window is None else f"window {list(m.window)}"]
                for m in card.modalities]),
        "Targets (output order)",
        *_rows([[t.name, f"label {t.label}", "includes " + ",".join(map(str, t.includes)), _hex(t.color),
                 t.terminology["meaning"] if t.terminology else ""] for t in card.targets]),
        "Sub-tasks",
        *_rows([[s.name, "+".join(s.targets), f"primary {s.primary}",
                 "auxiliaries " + (", ".join(s.auxiliaries) or "none")] for s in card.subtasks]),
        f"Grid        outputs on the {card.reference} grid; working spacing "
        + ("native" if card.spacing is None else " x ".join(f"{v:g}" for v in card.spacing) + " mm"),
        f"Inference   {_windows(card)}, overlap {card.inference.overlap}, {card.inference.blend} blending",
    ]
    prov = meta.get("provenance") or {}
    lines.append("Provenance" + ("" if prov else "  none recorded (untrained or hand-made bundle)"))
    lines += [f"  {k:<10}  {v}" for k, v in prov.items()]
    metrics = meta.get("metrics") or {}
    lines.append("Metrics" + ("" if metrics else "     none recorded"))
    lines += [f"  {k:<10}  {json.dumps(v)}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def _gates(bundle: Bundle, case_dir: Path, as_json: bool) -> int:
    if bundle.arch != "ciml":
        raise CIMLError(f"--gates: the bundle {bundle.path} is a {bundle.arch} network, which has no "
                        "information gates (only ciml bundles have)")
    window = centred_window(read_case_folder(bundle.card, case_dir), bundle.card.inference.roi_size)
    diagnostics = gate_diagnostics(bundle.network, torch.from_numpy(window)[None])
    if as_json:
        sys.stdout.write(json.dumps([d.to_dict() for d in diagnostics], indent=2) + "\n")
    else:
        roi = "x".join(map(str, bundle.card.inference.roi_size))
        sys.stdout.write(f"Gates of {bundle.card.name} on case {case_dir.name} (the {roi} window at its centre)\n"
                         + format_gate_table(diagnostics))
    return 0


def read_case_folder(card: ModelCard, folder: Path) -> np.ndarray:
    """A case folder in the BraTS layout (``<case>/<case>_<modality>.nii.gz``, or the BraTS 2023
    names) read as the card says: float32 (M, X, Y, Z) on the working grid, normalised."""
    if not folder.is_dir():
        raise DataError(f"--case {folder}", "not found" if not folder.exists() else "is not a folder")
    for name in _CASE_LAYOUTS:
        record = next((r for r in LAYOUTS[name].cases(folder.parent) if r["case"] == folder.name), None)
        if record is not None and any(m in record for m in card.modality_names):
            return load_case(card, {m: record.get(m) for m in card.modality_names}, case_id=folder.name).image
    raise DataError(f"--case {folder}", f"holds no {folder.name}_<modality>.nii.gz image of the card's "
                                        f"modalities ({', '.join(card.modality_names)})")
