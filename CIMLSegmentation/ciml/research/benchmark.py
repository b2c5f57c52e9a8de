"""Speed and memory of inference and heat maps on one BraTS-sized case (docs/performance-targets.md).

The configurations run on the same volume with the same sliding window (the card's):

- ``ciml``: CIML segmentation (:func:`~ciml.inference.sliding_window.predict_logits`);
- ``ciml_cams``: CIML with every (target, modality) Grad-CAM map
  (:func:`~ciml.inference.sliding_window.predict_with_cams`, one backward per target and window);
- ``early_fusion``: a MONAI DynUNet of about the same parameter count, segmentation only;
- ``segresnet``: the yardstick, MONAI's BraTS bundle network (SegResNet) with the
  bundle's sliding window (one 240 x 240 x 160 window, :mod:`ciml.research.yardstick`), on the
  same normalised case; segmentation logits only;
- ``ciml_effects``: CIML with every modality's withheld output
  (:func:`~ciml.inference.effects.predict_withheld`);
- ``captum_loop``: the same maps as ``ciml_cams`` from Captum's layer attributions
  (:mod:`ciml.research.captum_loop`), blended by the same sliding window: the baseline the
  one-backward design is compared against.

On the CPU each configuration runs in a fresh spawned child process, so that its peak resident
memory (``ru_maxrss``) is its own and not the high-water mark of whatever ran before it; the
child times it too. With ``isolate=False`` (and on CUDA, where the peak counter can be reset)
everything runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import monai.inferers  # noqa: F401 - loaded before a child measures its baseline memory
import numpy as np
import torch

from ciml.bundle.weights import load_bundle
from ciml.config import ModelCard, card_from_dict, preset_dict
from ciml.data.case import regrid
from ciml.data.geometry import Geometry
from ciml.data.normalize import normalize
from ciml.data.synthetic import SIZES, generate_case
from ciml.inference.effects import predict_withheld
from ciml.inference.sliding_window import autocast, predict_logits, predict_with_cams
from ciml.inference.windows import plan_windows, window_count
from ciml.research.captum_loop import predict_with_captum
from ciml.nn import build_network, parameter_count
from ciml.research.tables import aligned, gb, ratio_lines
from ciml.research.targets import CONFIGS, LABELS, MEMORY_TARGET_BYTES, ratio_verdicts
from ciml.research.yardstick import OVERLAP, ROI_SIZE, SW_BATCH_SIZE, segresnet, segresnet_inferer


class _Enough(Exception):
    """Raised from a progress callback to stop a sliding window after some windows."""


@dataclass
class Setup:
    """What every configuration needs: the card, the image, the device and the seed; ``model``: a
    bundle whose trained weights the CIML configurations run (random seeded weights otherwise)."""

    card: ModelCard
    image: torch.Tensor  # (M, *S) normalised, on the card's working grid
    device: torch.device
    seed: int = 0
    model: str | None = None
    segresnet_roi: tuple[int, ...] = ROI_SIZE  # the yardstick's window (the bundle's; smaller in tests)


def benchmark_card(preset: str = "brats", size: str = "full", overrides: dict | None = None) -> ModelCard:
    """The preset's card; for ``size="small"`` its spacing is the small phantom's (2.5 mm).

    The image is always taken on the card's working grid, so a small run changes the card
    rather than resampling the small phantom up to the full grid.
    """

    data = preset_dict(preset)
    if size == "small" and preset in SIZES:
        data["spacing"] = list(SIZES[preset]["small"].spacing)
    for key, value in (overrides or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return card_from_dict(data)


def benchmark_image(card: ModelCard, size: str = "full", seed: int = 0, kind: str = "brats") -> torch.Tensor:
    """Case 0 of the synthetic ``kind`` data, normalised and on the card's spacing: (M, *S)."""

    case = generate_case(kind, 0, seed=seed, size=size)
    values = np.stack([normalize(case.images[m.name], m) for m in card.modalities])
    if card.spacing is not None and tuple(card.spacing) != tuple(case.spacing):
        dim = len(case.spacing)
        source = Geometry(origin=tuple(case.origin), spacing=tuple(case.spacing),
                          direction=tuple(np.eye(dim).ravel()), size=tuple(values.shape[1:]))
        values = regrid(values, source, source.with_spacing(card.spacing))
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def config_network(name: str, card: ModelCard, seed: int = 0, model: str | None = None) -> torch.nn.Module:
    """The network configuration ``name`` runs, in eval mode.

    Args:
        name: one of :data:`CONFIGS`; ``early_fusion`` runs the early-fusion network, every
            other configuration the CIML network.
        card: the benchmark's card.
        seed: seeds the initial weights.
        model: a bundle folder whose trained CIML network the CIML configurations run (the
            early-fusion network stays randomly initialised: only its cost is compared).
    """
    if name == "segresnet":
        return segresnet(seed)
    if model is not None and name != "early_fusion":
        return load_bundle(model).network.eval()
    torch.manual_seed(seed)
    return build_network(card, "early-fusion" if name == "early_fusion" else "ciml").eval()


def predict_segresnet(network, image: torch.Tensor, roi_size: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Logits (3, *S) of the yardstick: MONAI's sliding window with the BraTS bundle's settings."""
    with torch.inference_mode(), autocast(device):
        return segresnet_inferer(roi_size)(image.unsqueeze(0).to(device), network)[0].float()


def segresnet_window_count(setup: Setup) -> int:
    """The yardstick's predictor calls on the setup's image (1 for a BraTS case)."""
    return window_count(tuple(setup.image.shape[1:]), setup.segresnet_roi, OVERLAP, SW_BATCH_SIZE)


def runner(name: str, network, setup: Setup) -> Callable[[int | None], float]:
    """``run(max_windows) -> seconds`` for one configuration.

    ``max_windows`` stops the sliding window after that many predictor calls (warm-up, or a
    baseline too slow to run over the whole volume); ``None`` runs it all.
    """

    if name == "segresnet":
        def run_segresnet(max_windows: int | None = None) -> float:
            _sync(setup.device)
            start = time.perf_counter()
            predict_segresnet(network, setup.image, tuple(setup.segresnet_roi), setup.device)
            _sync(setup.device)
            return time.perf_counter() - start

        return run_segresnet

    predict = {"ciml": predict_logits, "early_fusion": predict_logits, "ciml_effects": predict_withheld,
               "ciml_cams": predict_with_cams, "captum_loop": predict_with_captum}[name]

    def run(max_windows: int | None = None) -> float:
        def on_window(done: int, total: int) -> None:
            if max_windows is not None and done >= max_windows:
                raise _Enough

        _sync(setup.device)
        start = time.perf_counter()
        try:
            predict(network, setup.image, setup.card, setup.device, on_window)
        except _Enough:
            pass
        _sync(setup.device)
        return time.perf_counter() - start

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_config(name: str, setup: Setup, repeats: int, max_windows: int | None = None,
                warmup: bool = True) -> dict[str, Any]:
    """Median, min and max wall time of ``repeats`` runs after a one-window warm-up.

    One window is enough to warm up (lazy kernel selection and allocator growth happen on the
    first window; every later window has the same shape), and costs 1/windows of a run.
    With ``max_windows``, the time of that many windows is scaled to the whole volume.
    """

    if name == "segresnet":  # one window: the warm-up and a cap would run it all anyway
        total, max_windows = segresnet_window_count(setup), None
    else:
        plan = plan_windows(setup.image, setup.card)
        total = window_count(plan.shape, plan.roi_size, plan.overlap, setup.card.inference.sw_batch_size)
    network = config_network(name, setup.card, setup.seed, setup.model).to(setup.device)
    run = runner(name, network, setup)
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    if warmup:
        run(1)
    capped = max_windows is not None and max_windows < total
    scale = total / max_windows if capped else 1.0
    times = [run(max_windows if capped else None) * scale for _ in range(repeats)]
    result = {"label": LABELS[name], "parameters": parameter_count(network),
              "windows": total, "windows_timed": max_windows if capped else total, "extrapolated": capped,
              "warmup": warmup, "times_s": times, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    if setup.device.type == "cuda":
        result["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(setup.device))
    return result


def rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024


def _child(name: str, card_dict: dict, image_path: str, repeats: int, max_windows: int | None,
           warmup: bool, threads: int | None, seed: int, model: str | None, segresnet_roi: tuple[int, ...],
           conn) -> None:
    """Spawned: time one configuration and report its peak RSS (absolute and over imports)."""
    try:
        import captum.attr  # noqa: F401 - imported before the baseline so imports are not counted

        if threads:
            torch.set_num_threads(threads)
        baseline = rss_bytes()
        setup = Setup(card_from_dict(card_dict), torch.from_numpy(np.load(image_path)), torch.device("cpu"), seed,
                      model, tuple(segresnet_roi))
        result = time_config(name, setup, repeats, max_windows, warmup)
        peak = rss_bytes()
        result.update(rss_baseline_bytes=baseline, rss_peak_bytes=peak, rss_increase_bytes=peak - baseline)
        conn.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_isolated(name: str, setup: Setup, repeats: int, max_windows: int | None = None,
                 warmup: bool = True, threads: int | None = None, workdir: str | None = None) -> dict[str, Any]:
    """:func:`time_config` in a fresh spawned process, with its peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        image_path = os.path.join(tmp, "image.npy")
        np.save(image_path, setup.image.numpy())
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(name, setup.card.to_dict(), image_path, repeats,
                                                max_windows, warmup, threads, setup.seed, setup.model,
                                                tuple(setup.segresnet_roi), child))
        proc.start()
        child.close()
        try:
            status, payload = parent.recv()
        except EOFError:
            status, payload = "error", "the child process died (out of memory?)"
        proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark of {name} failed: {payload}")
    return payload


def run_benchmark(setup: Setup, configs: tuple[str, ...] = CONFIGS, repeats: int = 3, isolate: bool | None = None,
                  windows: int | None = None, baseline_windows: int | None = None, threads: int | None = None,
                  on_config: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Time (and on the CPU, isolated, measure the memory of) each configuration.

    Args:
        setup: card, image, device and seed.
        configs: which of :data:`CONFIGS` to run, in order.
        repeats: timed runs per configuration (after a one-window warm-up).
        isolate: one spawned process per configuration (CPU only; default: on the CPU).
        windows: time every configuration on this many windows only, scaled to the volume.
        baseline_windows: the same for the Captum loop alone (it is ~20x slower); when given,
            its warm-up is skipped (its first of ~20 Captum calls per window warms the rest).
        threads: torch threads (also set in the children).
        on_config: called with each configuration's result as it finishes (progress).

    Returns:
        A JSON-ready dict: ``configs`` (name -> times, parameters, memory), ``ratios``,
        ``targets`` and the case's shape.
    """
    isolate = setup.device.type == "cpu" if isolate is None else isolate and setup.device.type == "cpu"
    results = {}
    for name in configs:
        cap = baseline_windows if name == "captum_loop" and baseline_windows else windows
        warmup = not (name == "captum_loop" and baseline_windows)
        if isolate:
            results[name] = run_isolated(name, setup, repeats, cap, warmup, threads)
        else:
            results[name] = time_config(name, setup, repeats, cap, warmup)
        if on_config is not None:
            on_config(name, results[name])
    ratios = ratio_verdicts({name: r["median_s"] for name, r in results.items()})
    targets = {key: {"target": f"<= {r['target']}", "value": r["value"], "met": r["met"]}
               for key, r in ratios.items() if r["target"] is not None}
    memory_key = "cuda_peak_bytes" if setup.device.type == "cuda" else "rss_peak_bytes"
    for name in ("ciml", "ciml_effects", "ciml_cams"):
        if memory_key in results.get(name, {}):
            peak = results[name][memory_key]
            targets[f"{name} peak memory"] = {"target": f"< {MEMORY_TARGET_BYTES / 1e9:g} GB", "value": peak, "met": peak < MEMORY_TARGET_BYTES}
    plan = plan_windows(setup.image, setup.card)
    windows = {"box": list(plan.shape), "roi_size": list(plan.roi_size),
               "count": window_count(plan.shape, plan.roi_size, plan.overlap, setup.card.inference.sw_batch_size)}
    return {"card": setup.card.name, "image_shape": list(setup.image.shape), "spacing": list(setup.card.spacing or []),
            "windows": windows,
            "roi_size": list(setup.card.inference.roi_size), "overlap": setup.card.inference.overlap,
            "sw_batch_size": setup.card.inference.sw_batch_size, "blend": setup.card.inference.blend,
            "repeats": repeats, "isolated": isolate, "configs": results, "ratios": ratios, "targets": targets}


def speed_table(result: dict[str, Any]) -> str:
    """:func:`run_benchmark`'s result as text: times, memory, parameters, ratios and targets."""
    lines = [f"Case     {result['card']}: {' x '.join(map(str, result['image_shape']))}, body box "
             f"{'x'.join(map(str, result['windows']['box']))} in {result['windows']['count']} window(s) of "
             f"{'x'.join(map(str, result['windows']['roi_size']))}, overlap {result['overlap']}, "
             f"{result['blend']} blending, {result['repeats']} repeat(s)", ""]
    cuda = any("cuda_peak_bytes" in r for r in result["configs"].values())
    rows = [["configuration", "median s", "min s", "max s", "peak mem", "mem increase", "parameters"]]
    for r in result["configs"].values():
        note = f" (scaled from {r['windows_timed']}/{r['windows']} windows)" if r["extrapolated"] else ""
        peak = r.get("cuda_peak_bytes") if cuda else r.get("rss_peak_bytes")
        rows.append([r["label"] + note, f"{r['median_s']:.1f}", f"{r['min_s']:.1f}", f"{r['max_s']:.1f}",
                     gb(peak), "-" if cuda else gb(r.get("rss_increase_bytes")), f"{r['parameters']:,}"])
    lines += aligned(rows)
    lines += ["", "Ratios of median times", *ratio_lines(result["ratios"], 24)]
    for key, mem in result["targets"].items():
        if key.endswith("peak memory"):
            lines.append(f"  {key:<24} {gb(mem['value']):>9}   target < {MEMORY_TARGET_BYTES / 1e9:g} GB: {'met' if mem['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"
