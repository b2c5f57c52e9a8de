"""The yardstick: MONAI's BraTS bundle pipeline, and whole processes timed against it.

What a BraTS user would otherwise run: the ``brats_mri_segmentation`` bundle of the MONAI model
zoo (``models/brats_mri_segmentation/configs/inference.json``, read from
github:Project-MONAI/model-zoo), built here from MONAI's own classes (no hand-written
equivalents) with random seeded weights (its weights cannot be downloaded here; the cost does
not depend on them):

- network: ``SegResNet(blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16,
  in_channels=4, out_channels=3, dropout_prob=0.2)``;
- preprocessing: ``LoadImaged`` of the four images (stacked as channels),
  ``NormalizeIntensityd(nonzero=True, channel_wise=True)``;
- inferer: ``SlidingWindowInferer(roi_size=[240, 240, 160], sw_batch_size=1, overlap=0.5)``,
  the bundle's settings; ``mode`` is not set there, so MONAI's default ``"constant"``. A
  240 x 240 x 155 case is padded to the one 240 x 240 x 160 window (overlap does not matter then);
- postprocessing: ``Activations(sigmoid=True)``, ``AsDiscrete(threshold=0.5)``, the bundle's
  label conversion (ET -> 4, else TC/WT -> 1/2), ``SaveImage`` as uint8 NIfTI. The bundle's
  ``Invertd`` inverts only ``NormalizeIntensityd``, which moves no voxel: left out. ``amp`` is on
  in the bundle but only acts on CUDA.

:func:`run_segresnet` is that pipeline; ``python -m ciml.research.yardstick --inputs ... --out
DIR`` runs it as a separate process. :func:`run_pipelines` (``ciml benchmark pipelines``)
writes the synthetic case as four NIfTI files and times, as separate processes interleaved in
each repeat, ``ciml segment --maps none`` with a ``ciml init --preset brats`` bundle, the same
with the built-in model, and this pipeline, without and with the huge pages ``ciml segment``
uses (:mod:`ciml.startup`); with the peak RSS of each process (``os.wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import SegResNet
from monai.transforms import Activations, AsDiscrete, Compose, Lambda, LoadImaged, NormalizeIntensityd, SaveImage

from ciml.config import ModelCard
from ciml.data.synthetic import generate_case
from ciml.data.synthetic.common import write_case
from ciml.research.tables import aligned, gb, ratio_lines
from ciml.research.targets import PIPELINE_LABELS, PIPELINE_RATIOS, PIPELINES, ratio_verdicts
from ciml.startup import HUGE_PAGES

# The bundle's configs/inference.json (network_def and inferer).
SEGRESNET = {"blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1), "init_filters": 16, "in_channels": 4,
             "out_channels": 3, "dropout_prob": 0.2}
ROI_SIZE = (240, 240, 160)
SW_BATCH_SIZE = 1
OVERLAP = 0.5


def segresnet(seed: int = 0) -> torch.nn.Module:
    """The bundle's SegResNet with random seeded weights, in eval mode."""
    torch.manual_seed(seed)
    return SegResNet(spatial_dims=3, **SEGRESNET).eval()


def segresnet_inferer(roi_size: Sequence[int] = ROI_SIZE) -> SlidingWindowInferer:
    """The bundle's sliding window (``mode`` left at MONAI's default, as the bundle does)."""
    return SlidingWindowInferer(roi_size=tuple(roi_size), sw_batch_size=SW_BATCH_SIZE, overlap=OVERLAP)


def preprocessing() -> Compose:
    """The bundle's preprocessing: load the images as channels, normalise the non-zero voxels per channel."""
    return Compose([LoadImaged(keys="image", image_only=False),
                    NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)])


def _bundle_labels(x: torch.Tensor) -> torch.Tensor:
    """The bundle's label conversion: channel 2 (ET) -> 4, else channel 0 (TC) -> 1, else channel 1 (WT) -> 2."""
    return torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))


def postprocessing() -> Compose:
    """The bundle's postprocessing up to the save: sigmoid, threshold 0.5, labels."""
    return Compose([Activations(sigmoid=True), AsDiscrete(threshold=0.5), Lambda(_bundle_labels)])


def run_segresnet(inputs: Sequence[str | Path], out_dir: str | Path, seed: int = 0,
                  roi_size: Sequence[int] = ROI_SIZE, network: torch.nn.Module | None = None) -> Path:
    """Read four images, normalise, infer, write the label map (the bundle's pipeline, on the CPU).

    Returns the written NIfTI file.
    """
    data = preprocessing()({"image": [str(p) for p in inputs]})
    image = data["image"]
    net = segresnet(seed) if network is None else network
    with torch.inference_mode():
        logits = segresnet_inferer(roi_size)(image.unsqueeze(0), net)[0]
    labels = postprocessing()(logits)
    if not isinstance(labels, MetaTensor):
        labels = MetaTensor(labels, meta=image.meta)
    saver = SaveImage(output_dir=str(out_dir), output_ext=".nii.gz", output_dtype="uint8", output_postfix="seg",
                      separate_folder=False, resample=False, squeeze_end_dims=True, print_log=False)
    saver(labels, meta_data=image.meta)
    written = sorted(Path(out_dir).glob("*_seg.nii.gz"))
    if not written:
        raise RuntimeError(f"the SegResNet pipeline wrote nothing into {out_dir}")
    return written[-1]


# --- whole processes ---------------------------------------------------------------------------

def write_benchmark_case(folder: str | Path, card: ModelCard, size: str = "full", seed: int = 0) -> dict[str, Path]:
    """Write the synthetic case 0 as NIfTI files; modality name -> path, in the card's order."""
    case = generate_case("brats", 0, seed=seed, size=size)
    case_dir = write_case(case, folder)
    return {m: case_dir / f"{case.case_id}_{m}.nii.gz" for m in card.modality_names}


def timed_process(command: Sequence[str], log: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command``; its wall time and its own peak RSS (``os.wait4``'s ``ru_maxrss``)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = Path(log).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({proc.returncode}):\n{tail}")
    peak = usage.ru_maxrss if platform.system() == "Darwin" else usage.ru_maxrss * 1024
    return {"seconds": seconds, "rss_peak_bytes": int(peak)}


def pipeline_commands(inputs: dict[str, Path], bundles: dict[str, Path], out: Path, python: str = sys.executable,
                      seed: int = 0, roi_size: Sequence[int] = ROI_SIZE) -> dict[str, list[str]]:
    """The command of each of :data:`PIPELINES` writing into ``out/<name>``."""
    commands = {}
    for name in ("ciml_brats", "ciml_builtin"):
        commands[name] = [python, "-m", "ciml", "segment", "--model", str(bundles[name]), "--maps", "none",
                          "--progress", "json", "--out", str(out / name),
                          *[a for m, p in inputs.items() for a in ("--input", f"{m}={p}")]]
    for name in ("segresnet", "segresnet_huge_pages"):
        commands[name] = [python, "-m", "ciml.research.yardstick", "--seed", str(seed), "--out",
                          str(out / name), "--roi-size", *map(str, roi_size),
                          "--inputs", *map(str, inputs.values())]
    return commands


def pipeline_environments(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The environment of each of :data:`PIPELINES`: the ciml processes get ``env`` (and set huge
    pages for themselves unless it says otherwise); MONAI's pipeline runs without them, as its
    users run it, and with them."""
    default = {k: v for k, v in env.items() if k != HUGE_PAGES}
    return {"ciml_brats": env, "ciml_builtin": env, "segresnet": default,
            "segresnet_huge_pages": {**default, HUGE_PAGES: "1"}}


def run_pipelines(workdir: str | Path, card: ModelCard, builtin: str | Path, size: str = "full", repeats: int = 3,
                  seed: int = 0, roi_size: Sequence[int] = ROI_SIZE, threads: int | None = None,
                  on_run: Callable[[str, int, dict], None] | None = None) -> dict[str, Any]:
    """Time the three whole processes, interleaved (one of each per repeat), median over ``repeats``.

    Args:
        workdir: an empty or new folder for the case, the bundle and the outputs.
        card: the card of the CIML bundle written with ``ciml init`` (the ``brats`` preset; a
            small card in tests).
        builtin: the built-in model's bundle (:func:`ciml.resources.builtin_model`).
        size: the synthetic case's size (``full``: 4 x 240 x 240 x 155 at 1 mm).
        roi_size: SegResNet's window (the bundle's 240 x 240 x 160; smaller in tests).
        threads: torch threads of every process (``OMP_NUM_THREADS``); default: torch's choice.
        on_run: called with (name, repeat, result) after every process.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    inputs = write_benchmark_case(work / "case", card, size, seed)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    bundles = {"ciml_brats": _init_bundle(work / "brats-bundle", card, seed, env), "ciml_builtin": Path(builtin)}
    envs = pipeline_environments(env)
    runs: dict[str, list[dict]] = {name: [] for name in PIPELINES}
    for r in range(repeats):
        commands = pipeline_commands(inputs, bundles, work / f"run{r}", seed=seed, roi_size=roi_size)
        for name in PIPELINES:
            result = timed_process(commands[name], work / f"run{r}-{name}.log", envs[name])
            report = work / f"run{r}" / name / "report.json"
            if report.exists():  # where a ciml process spent its time, by stage
                stages = json.loads(report.read_text())["timings_s"]
                result["stages_s"] = {**stages, "start-up and the rest": result["seconds"] - sum(stages.values())}
            runs[name].append(result)
            if on_run is not None:
                on_run(name, r, result)
    processes = {}
    for name, results in runs.items():
        times = [x["seconds"] for x in results]
        processes[name] = {"label": PIPELINE_LABELS[name], "times_s": times, "median_s": statistics.median(times),
                           "min_s": min(times), "max_s": max(times),
                           "rss_peak_bytes": max(x["rss_peak_bytes"] for x in results),
                           "stages_median_s": {stage: statistics.median(x["stages_s"][stage] for x in results)
                                               for stage in results[0].get("stages_s", {})},
                           "command": " ".join(pipeline_commands(inputs, bundles, work / "runN", seed=seed,
                                                                 roi_size=roi_size)[name])}
    ratios = ratio_verdicts({name: p["median_s"] for name, p in processes.items()}, PIPELINE_RATIOS)
    return {"card": card.name, "size": size, "inputs": {m: str(p) for m, p in inputs.items()},
            "roi_size": list(roi_size), "repeats": repeats, "processes": processes, "ratios": ratios}


def _init_bundle(folder: Path, card: ModelCard, seed: int, env: dict[str, str]) -> Path:
    """``ciml init`` a bundle of ``card`` with random seeded weights, as a user would."""
    card_file = folder.with_suffix(".card.json")
    card_file.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    timed_process([sys.executable, "-m", "ciml", "init", "--card", str(card_file), "--out", str(folder),
                   "--seed", str(seed), "--force"], folder.with_suffix(".init.log"), env)
    return folder


def pipelines_table(result: dict[str, Any]) -> str:
    """:func:`run_pipelines`' result as text: median/min/max seconds and peak RSS of each process,
    where a ciml process's time went, and the ratios against SegResNet."""
    lines = [f"Case     synthetic {result['size']} BraTS case written as 4 NIfTI files; {result['repeats']} "
             f"interleaved repeat(s), separate processes", ""]
    rows = [["process", "median s", "min s", "max s", "peak RSS"]]
    rows += [[r["label"], f"{r['median_s']:.1f}", f"{r['min_s']:.1f}", f"{r['max_s']:.1f}", gb(r["rss_peak_bytes"])]
             for r in result["processes"].values()]
    lines += aligned(rows)
    stages = {name: r["stages_median_s"] for name, r in result["processes"].items() if r.get("stages_median_s")}
    if stages:
        lines += ["", "Where a ciml process's time went (median seconds per stage, from its report.json)"]
        names = list(next(iter(stages.values())))
        lines += aligned([["process", *names]] + [[name, *(f"{s[n]:.1f}" for n in names)] for name, s in stages.items()])
    lines += ["", "Ratios of median times", *ratio_lines(result["ratios"], 28)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ciml.research.yardstick",
                                description="MONAI's BraTS bundle pipeline (SegResNet, random seeded weights): "
                                            "read four images, normalise, infer, write the label map.")
    p.add_argument("--inputs", nargs=4, required=True, metavar="PATH", help="the four modality images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--roi-size", type=int, nargs=3, default=list(ROI_SIZE), metavar="N",
                   help="sliding window (the bundle's: 240 240 160)")
    args = p.parse_args(argv)
    written = run_segresnet(args.inputs, args.out, args.seed, args.roi_size)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
