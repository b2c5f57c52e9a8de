"""Where the time of one CIML window goes: ``ciml benchmark profile``.

Runs one window (the window plan's on the benchmark case, or the card's ``roi_size``; batch 1,
random input: the cost does not depend on the values) through the network's blocks in the order :meth:`~ciml.nn.CIMLNet.forward_features`
calls them, timing each: every encoder level (summed over the modalities, which all run the same
level), the gates of each level (summed over sub-tasks and auxiliaries), and each decoder's
up-blocks and head. The blocks are the network's own modules, called with the same tensors as
its forward; a full forward is timed as well so the sum can be checked against it.

The same window is then run in alternative forms, interleaved with the default so
that machine load affects both alike: channels-last 3D memory format, and ``torch.compile``
(its first call, which compiles, timed apart) when asked.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import defaultdict
from typing import Any

import torch

from ciml.bundle.weights import load_bundle
from ciml.config import ModelCard
from ciml.nn import build_network, parameter_count


def _timed_blocks(network, x: torch.Tensor) -> dict[str, float]:
    """Seconds per row of one pass through the blocks (insertion order = call order)."""
    rows: dict[str, float] = defaultdict(float)
    card = network.card
    features = {}
    for i, m in enumerate(card.modality_names):
        if m not in network.encoders:
            continue
        h, outs = x[:, i:i + 1], []
        for lv, level in enumerate(network.encoders[m].levels):
            start = time.perf_counter()
            h = level(h)
            rows[f"encoder level {lv}"] += time.perf_counter() - start
            outs.append(h)
        features[m] = outs
    for s in card.subtasks:
        skips = list(features[s.primary])
        for _, a, lv in network.gate_keys(s.name):
            start = time.perf_counter()
            message = network.gate(s.name, a, lv)(features[s.primary][lv], features[a][lv]).message
            skips[lv] = skips[lv] + message
            rows[f"gates level {lv}"] += time.perf_counter() - start
        decoder = network.decoders[s.name]
        h = skips[-1]
        top = len(skips) - 1
        for j, (up, skip) in enumerate(zip(decoder.up, reversed(skips[:-1]))):
            start = time.perf_counter()
            h = up(h, skip)
            rows[f"decoder {s.name} up-block to level {top - j - 1}"] += time.perf_counter() - start
        start = time.perf_counter()
        decoder.head(h)
        rows[f"decoder {s.name} head"] += time.perf_counter() - start
    return dict(rows)


def profile_network(card: ModelCard, model: str | None = None, seed: int = 0, repeats: int = 3,
                    roi: tuple[int, ...] | None = None, compile_network: bool = False) -> dict[str, Any]:
    """Median seconds of each block row over ``repeats`` passes of one window, after a warm-up.

    Args:
        card: the card whose network is profiled.
        model: a bundle folder: its network instead of the card's with random seeded weights.
        seed: seeds the random weights and the input window.
        repeats: timed passes (the median is reported).
        roi: the window; default the card's ``inference.roi_size``.
        compile_network: also time the window through ``torch.compile`` (slow to compile).

    Returns:
        ``rows``: list of {name, kind, count, seconds, share}; ``total_s`` (their sum),
        ``forward_s`` (a full forward, for comparison), ``alternatives`` (name -> median
        seconds of a full forward, with ``default`` timed interleaved), the window and counts.
    """
    if model is not None:
        network = load_bundle(model).network.eval()
        card = network.card
    else:
        torch.manual_seed(seed)
        network = build_network(card, "ciml").eval()
    roi = tuple(roi or card.inference.roi_size)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, len(card.modalities), *roi, generator=generator)
    with torch.inference_mode():
        network(x)  # warm-up
        passes = [_timed_blocks(network, x) for _ in range(max(1, repeats))]
        forwards = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            network(x)
            forwards.append(time.perf_counter() - start)
    alternatives = time_alternatives(network, x, repeats, compile_network)
    names = list(passes[0])
    seconds = {n: statistics.median(p[n] for p in passes) for n in names}
    total = sum(seconds.values())
    encoders = sum(1 for m in card.modality_names if m in network.encoders)
    gates_per_level = sum(len(s.auxiliaries) for s in card.subtasks)
    rows = []
    for n in names:
        kind = n.split()[0]
        count = encoders if kind == "encoder" else gates_per_level if kind == "gates" else 1
        rows.append({"name": n, "kind": kind, "count": count, "seconds": seconds[n],
                     "share": seconds[n] / total if total > 0 else 0.0})
    return {"card": card.name, "model": model, "roi_size": list(roi), "modalities": len(card.modalities),
            "encoders": encoders, "gates_per_level": gates_per_level, "gate_levels": list(network.gate_levels),
            "features": list(card.network.features), "parameters": parameter_count(network),
            "repeats": max(1, repeats), "rows": rows, "total_s": total, "forward_s": statistics.median(forwards),
            "alternatives": alternatives}


def _forward_seconds(network, x: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        network(x)
    return time.perf_counter() - start


def time_alternatives(network, x: torch.Tensor, repeats: int, compile_network: bool = False) -> dict[str, float]:
    """Median seconds of a full forward of ``x`` as is and in each alternative, interleaved.

    ``channels_last_3d``: a copy of the network and the input in that memory format (what a
    convolution library may run faster); ``torch.compile``: the network compiled by inductor,
    its first (compiling) call reported as ``torch.compile first call``.
    """
    variants = {"default": (network, x)}
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last_3d)
    variants["channels_last_3d"] = (channels_last, x.contiguous(memory_format=torch.channels_last_3d))
    out: dict[str, float] = {}
    if compile_network:
        compiled = torch.compile(network)
        out["torch.compile first call"] = _forward_seconds(compiled, x)
        variants["torch.compile"] = (compiled, x)
    for net, inputs in variants.values():
        _forward_seconds(net, inputs)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats)):
        for name, (net, inputs) in variants.items():
            times[name].append(_forward_seconds(net, inputs))
    return {**{name: statistics.median(t) for name, t in times.items()}, **out}


def format_profile(result: dict[str, Any]) -> str:
    """The table: each row's median seconds and share of the total, then the totals by kind."""
    lines = [f"Model    {result['card']}{' (' + result['model'] + ')' if result['model'] else ' (random weights)'}: "
              f"features {result['features']}, {result['parameters']:,} parameters, one window "
              f"{'x'.join(map(str, result['roi_size']))}, batch 1, median of {result['repeats']}", ""]
    head = ["block", "runs", "seconds", "share"]
    rows = [head] + [[r["name"], f"x{r['count']}", f"{r['seconds']:.3f}", f"{100 * r['share']:.1f} %"]
                     for r in result["rows"]]
    by_kind: dict[str, float] = defaultdict(float)
    for r in result["rows"]:
        by_kind[r["kind"]] += r["seconds"]
    total = result["total_s"]
    rows += [[f"all {k}s" if k != "gates" else "all gates", "", f"{v:.3f}", f"{100 * v / total:.1f} %"]
             for k, v in by_kind.items()]
    rows += [["sum of the blocks", "", f"{total:.3f}", "100.0 %"],
             ["one full forward (for comparison)", "", f"{result['forward_s']:.3f}", ""]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    if "windows" in result:
        lines += ["", f"Windows  {result['windows']} of this size cover the benchmark case's body box "
                      f"{'x'.join(map(str, result['box']))}"]
    alternatives = result.get("alternatives", {})
    if alternatives:
        base = alternatives["default"]
        lines += ["", "The same window, full forward, interleaved (median seconds, ratio to the default)"]
        lines += [f"  {name:<26} {sec:8.3f}" + ("" if "first call" in name else f"   {sec / base:5.2f}x")
                  for name, sec in alternatives.items()]
    return "\n".join(lines) + "\n"
