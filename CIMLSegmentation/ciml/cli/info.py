"""`ciml info --model DIR`: a readable summary of a model bundle, after checking it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ciml.bundle.weights import load_bundle
from ciml.config import ModelCard


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.model)
    if args.json:
        sys.stdout.write(json.dumps(bundle.metadata, indent=2) + "\n")
    else:
        sys.stdout.write(describe(bundle.path, bundle.card, bundle.metadata))
    return 0


def _rows(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


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
        f"Inference   window {list(card.inference.roi_size)}, overlap {card.inference.overlap}, "
        f"{card.inference.blend} blending",
    ]
    prov = meta.get("provenance") or {}
    lines.append("Provenance" + ("" if prov else "  none recorded (untrained or hand-made bundle)"))
    lines += [f"  {k:<10}  {v}" for k, v in prov.items()]
    metrics = meta.get("metrics") or {}
    lines.append("Metrics" + ("" if metrics else "     none recorded"))
    lines += [f"  {k:<10}  {json.dumps(v)}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"
