"""`ciml benchmark`: speed and memory of inference and heat maps on one BraTS-sized case.

Times CIML segmentation, CIML with every heat map, an early-fusion network of the same
parameter count, and a loop of Captum LayerGradCam calls computing the same maps, on one
synthetic case with the card's sliding window; prints a table with the ratios and bounds of
docs/performance-targets.md, and writes it as JSON with ``--out``. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ciml.bundle import read_card
from ciml.errors import CIMLError
from ciml.inference.device import resolve_device
from ciml.io_utils import write_text_new
from ciml.research.benchmark import Setup, benchmark_card, benchmark_image, machine_info, run_benchmark
from ciml.inference.windows import plan_windows, window_count
from ciml.research.profile import format_profile, profile_network
from ciml.research.information import information_table, measure_information
from ciml.research.window_plans import PLANS_SEED, compare_plans, plans_table
from ciml.research.targets import CONFIGS
from ciml.research.yardstick import run_pipelines
from ciml.resources import builtin_model


def run(args: argparse.Namespace) -> int:
    if args.seed is None:
        args.seed = PLANS_SEED if args.plans or args.information else 0
    if args.out and Path(args.out).exists():
        raise CIMLError(f"--out {args.out} already exists; choose another file")
    if args.cases < 1:
        raise CIMLError(f"--cases must be >= 1, got {args.cases}")
    if args.repeats < 1:
        raise CIMLError(f"--repeats must be >= 1, got {args.repeats}")
    for option in ("windows", "baseline_windows"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise CIMLError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    configs = tuple(CONFIGS)
    if args.only:
        configs = tuple(c.strip() for c in args.only.split(",") if c.strip())
        unknown = [c for c in configs if c not in CONFIGS]
        if unknown or not configs:
            raise CIMLError(f"--only: unknown configuration {unknown[0] if unknown else args.only!r} "
                            f"(known: {', '.join(CONFIGS)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    if sum(map(bool, (args.pipelines, args.profile, args.plans, args.information))) > 1:
        raise CIMLError("--pipelines, --profile, --plans and --information are separate runs; give one")
    if args.pipelines:
        return run_pipelines_command(args)
    if args.plans:
        return run_plans_command(args)
    if args.profile:
        return run_profile_command(args)
    if args.information:
        return run_information_command(args)
    device = resolve_device(args.device)
    # A bundle's own card (its window, spacing and network) when its trained weights are timed.
    card = read_card(args.model) if args.model else benchmark_card(args.preset, args.size)
    setup = Setup(card, benchmark_image(card, args.size, args.seed), device, args.seed, args.model)
    plan = plan_windows(setup.image, card)
    print(f"ciml benchmark: {card.name}, image {tuple(setup.image.shape)}, body box {plan.shape} in "
          f"{window_count(plan.shape, plan.roi_size, plan.overlap)} window(s) of {plan.roi_size}, "
          f"{args.repeats} repeat(s), device {device}", file=sys.stderr, flush=True)

    def progress(name: str, result: dict) -> None:
        print(f"  {name}: median {result['median_s']:.1f} s", file=sys.stderr, flush=True)

    result = run_benchmark(setup, configs, args.repeats, isolate=not args.in_process,
                           windows=args.windows, baseline_windows=args.baseline_windows, threads=args.threads, on_config=progress)
    result["machine"] = machine_info(device)
    result["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["command"] = "ciml benchmark " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ciml benchmark"
    sys.stdout.write(format_report(result))
    if args.out:
        write_text_new(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _stamp(result: dict[str, Any]) -> None:
    result["machine"] = machine_info(torch.device("cpu"))
    result["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["command"] = "ciml benchmark " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ciml benchmark"


def _write_out(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.out:
        write_text_new(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


def run_pipelines_command(args: argparse.Namespace) -> int:
    """``--pipelines``: whole processes against MONAI's BraTS SegResNet pipeline (issue 20)."""
    card = read_card(args.model) if args.model else benchmark_card(args.preset, "full")
    print(f"ciml benchmark --pipelines: {card.name} bundle, built-in model and SegResNet pipeline, "
          f"{args.size} case, {args.repeats} interleaved repeat(s)", file=sys.stderr, flush=True)

    def progress(name: str, repeat: int, r: dict) -> None:
        print(f"  repeat {repeat + 1} {name}: {r['seconds']:.1f} s, peak {_gb(r['rss_peak_bytes'])}",
              file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ciml-pipelines-") as tmp:
        result = run_pipelines(args.workdir or tmp, card, builtin_model(), args.size, args.repeats, args.seed,
                               threads=args.threads, on_run=progress)
    _stamp(result)
    sys.stdout.write(format_pipelines(result))
    _write_out(args, result)
    return 0


def run_plans_command(args: argparse.Namespace) -> int:
    """``--plans``: a trained bundle's accuracy and cost under each window plan."""
    model = args.model or str(builtin_model())
    print(f"ciml benchmark --plans: {model} on {args.cases} unseen sample cases", file=sys.stderr, flush=True)
    result = compare_plans(model, cases=args.cases, seed=args.seed)
    _stamp(result)
    sys.stdout.write(plans_table(result))
    _write_out(args, result)
    return 0


def run_information_command(args: argparse.Namespace) -> int:
    """``--information``: whether a bundle takes each hidden structure from the modality showing it."""
    model = args.model or str(builtin_model())
    print(f"ciml benchmark --information: {model} on {args.cases} unseen brats cases", file=sys.stderr, flush=True)
    card = read_card(model)
    if card.modality_names != ("t1", "t1ce", "t2", "flair") or set(card.target_names) != {"WT", "TC", "ET"}:
        raise CIMLError(f"--information needs a brats model (t1, t1ce, t2, flair; WT, TC, ET); {model} is "
                        f"{', '.join(card.modality_names)}")
    result = measure_information(model, cases=args.cases, seed=args.seed, variation=args.variation,
                                 device=str(resolve_device(args.device)))
    _stamp(result)
    primaries = {t: s.primary for s in card.subtasks for t in s.targets}
    sys.stdout.write(information_table(result, primaries))
    _write_out(args, result)
    return 0


def run_profile_command(args: argparse.Namespace) -> int:
    """``--profile``: where the time goes in one window of the plan on the benchmark case."""
    card = read_card(args.model) if args.model else benchmark_card(args.preset, args.size)
    image = benchmark_image(card, args.size, args.seed)
    plan = plan_windows(image, card)
    result = profile_network(card, model=args.model, seed=args.seed, repeats=args.repeats, roi=plan.roi_size,
                             compile_network=args.compile)
    result.update(box=list(plan.shape), windows=window_count(plan.shape, plan.roi_size, plan.overlap),
                  roi_before=list(card.inference.roi_size),
                  windows_before=window_count(tuple(image.shape[1:]), card.inference.roi_size, card.inference.overlap))
    _stamp(result)
    sys.stdout.write(format_profile(result))
    _write_out(args, result)
    return 0


def format_pipelines(result: dict[str, Any]) -> str:
    """The whole-process table: median/min/max seconds, peak RSS, ratios against SegResNet."""
    m = result["machine"]
    lines = [f"Machine  {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)",
             f"Date     {result['date']}",
             f"Case     synthetic {result['size']} BraTS case written as 4 NIfTI files; {result['repeats']} "
             f"interleaved repeat(s), separate processes", ""]
    head = ["process", "median s", "min s", "max s", "peak RSS"]
    rows = [head] + [[r["label"], f"{r['median_s']:.1f}", f"{r['min_s']:.1f}", f"{r['max_s']:.1f}",
                      _gb(r["rss_peak_bytes"])] for r in result["processes"].values()]
    lines += _aligned(rows)
    stages = {name: r["stages_median_s"] for name, r in result["processes"].items() if r.get("stages_median_s")}
    if stages:
        lines += ["", "Where a ciml process's time went (median seconds per stage, from its report.json)"]
        names = list(next(iter(stages.values())))
        rows = [["process", *names]] + [[name, *(f"{s[n]:.1f}" for n in names)] for name, s in stages.items()]
        lines += _aligned(rows)
    lines += ["", "Ratios of median times", *_ratio_lines(result["ratios"], 28)]
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in rows]


def _ratio_lines(ratios: dict[str, Any], width: int) -> list[str]:
    """One line per ratio: its value and its bound's verdict, or "report only"."""
    return [f"  {key:<{width}} {r['value']:6.2f}   "
            + ("report only" if r["target"] is None else f"target <= {r['target']}: {'met' if r['met'] else 'NOT met'}")
            for key, r in ratios.items()]


def _gb(value: Any) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} GB"


def format_report(result: dict[str, Any]) -> str:
    """The readable table: times, memory, parameters, ratios, targets, machine."""
    m = result["machine"]
    lines = [f"Machine  {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}",
             f"Date     {result['date']}",
             f"Case     {result['card']}: {' x '.join(map(str, result['image_shape']))}, body box "
             f"{'x'.join(map(str, result['windows']['box']))} in {result['windows']['count']} window(s) of "
             f"{'x'.join(map(str, result['windows']['roi_size']))}, overlap {result['overlap']}, "
             f"{result['blend']} blending, {result['repeats']} repeat(s)", ""]
    cuda = any("cuda_peak_bytes" in r for r in result["configs"].values())
    head = ["configuration", "median s", "min s", "max s", "peak mem", "mem increase", "parameters"]
    rows = [head]
    for r in result["configs"].values():
        note = f" (scaled from {r['windows_timed']}/{r['windows']} windows)" if r["extrapolated"] else ""
        peak = r.get("cuda_peak_bytes") if cuda else r.get("rss_peak_bytes")
        rows.append([r["label"] + note, f"{r['median_s']:.1f}", f"{r['min_s']:.1f}", f"{r['max_s']:.1f}",
                     _gb(peak), "-" if cuda else _gb(r.get("rss_increase_bytes")), f"{r['parameters']:,}"])
    lines += _aligned(rows)
    lines += ["", "Ratios of median times", *_ratio_lines(result["ratios"], 24)]
    for key, mem in result["targets"].items():
        if key.endswith("peak memory"):
            lines.append(f"  {key:<24} {_gb(mem['value']):>9}   target < 4 GB: {'met' if mem['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"
