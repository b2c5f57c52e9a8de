"""The `ciml` command line's arguments: every sub-command's parser, and nothing that loads torch.

`ciml --help`, `ciml card` and argument errors answer without importing torch, numpy or MONAI:
this module imports only argparse, ``ciml.choices`` and torch-free names of ``ciml.config`` and
``ciml.research``. What each command does lives in ``ciml/cli/<command>.py`` (``run(args)``),
which ``ciml.cli.main`` imports once the arguments are parsed.
"""

from __future__ import annotations

import argparse

from ciml import __version__
from ciml.choices import (
    ARCHITECTURES,
    BUNDLE_CHOICES,
    CACHE_MODES,
    DEMO_SEED,
    DEVICES,
    MAP_KINDS,
    OUTPUT_FORMATS,
    PROGRESS_MODES,
    SAMPLE_SIZES,
)
from ciml.config import PRESETS
from ciml.research.study.plan import PLANS
from ciml.research.targets import CONFIGS, UNSEEN_SEED

DESCRIPTION = "CIML: multimodal tumour segmentation with complementary information mutual learning."


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each sub-command's ``_run`` names its module in ``ciml.cli``."""
    parser = argparse.ArgumentParser(prog="ciml", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"ciml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, add in COMMANDS.items():
        add(sub).set_defaults(_run=f"ciml.cli.{module}")
    return parser


def _card(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("card", help="print a preset model card, or validate a card file",
                       description="Print a preset's model card as JSON (to edit into your own), "
                                   "or validate a card file and print it normalised.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a built-in card")
    src.add_argument("--check", metavar="FILE", help="a card file (JSON or YAML) to validate")
    p.add_argument("--out", metavar="FILE", help="write the card here instead of stdout (never overwrites)")
    return p


def _sample_data(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sample-data", help="write synthetic sample cases in the BraTS folder layout",
        description="Write N synthetic cases as DIR/<case>/<case>_<modality>.nii.gz plus "
                    "<case>_seg.nii.gz. 'brats': a brain-tumour phantom (t1, t1ce, t2, flair; "
                    "labels 0/1/2/4). 'glioma': realistic gliomas on the MNI152 brain, "
                    "what the built-in model is trained on (needs nilearn). 'shapes': the complementary-information demo task "
                    "(shapes, cue, echo; label 0/1). Deterministic for a seed; never "
                    "overwrites a case. See docs/sample-data.md.")
    # Kinds, sizes and variations are checked by ciml.data.synthetic (one clear message, exit code 2),
    # not by argparse `choices`, so the API and the command line refuse them alike.
    p.add_argument("--kind", required=True, metavar="{brats,glioma,shapes}", help="which task")
    p.add_argument("--cases", required=True, type=int, metavar="N", help="number of cases (>= 1)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder (created if needed)")
    p.add_argument("--seed", type=int, default=0, help="run seed (>= 0, default 0)")
    p.add_argument("--size", default="small", metavar="{small,full}",
                   help="small: fast (brats 96x96x64 at ~2.5 mm, glioma 96x96x62 at 2.5 mm, shapes 64^3 at 2 mm); "
                        "full: brats and glioma 240x240x155 at ~1 mm, shapes 128^3 at 1 mm (default small; "
                        "a brats case's voxel size varies by a per-case zoom)")
    p.add_argument("--variation", default="standard", metavar="NAME",
                   help="brats: 'shifted' draws head size, orientation, voxel size, bias, noise "
                        "and intensity scale outside the standard ranges, as another site; glioma: "
                        "one part of the generator taken away (no-mass-effect, no-hard-negatives, "
                        "random-tumour-contrast, clean-scanner, mild-scanner), to measure what it buys (default standard)")
    return p


def _demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="segment a sample case with the built-in model and draw an overview",
                       description="Make a synthetic BraTS-like case, segment it with the built-in sample "
                                   "model, write the outputs and overview.png, and print the Dice against "
                                   "the case's known label and each modality's contribution.")
    p.add_argument("--out", default="ciml-demo", metavar="DIR", help="output folder (ciml-demo)")
    p.add_argument("--model", metavar="BUNDLE", help="another bundle with the brats modalities")
    p.add_argument("--seed", type=int, default=DEMO_SEED,
                   help=f"seed of the synthetic case (default {DEMO_SEED}; the built-in model was trained on seed 0)")
    p.add_argument("--size", choices=SAMPLE_SIZES, default="small",
                   help="the case's size: small (96x96x64 at 2.5 mm) or full (240x240x155 at 1 mm)")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar")
    return p


def _segment(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="segment a case and show what each modality does",
                       description="Segment one case with a model bundle. Writes segmentation.<fmt>, "
                                   "effect_<modality>.<fmt> maps (what withholding each modality changes), "
                                   "and report.json with the modality relations into --out. Give any subset of "
                                   "the model's modalities, at least one per sub-task.")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="the model bundle folder")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="one per modality of the model (file or DICOM folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto takes CUDA when present and falls back to the CPU when out of memory")
    p.add_argument("--maps", choices=MAP_KINDS, default="effects",
                   help="effects (default): what withholding each modality changes, the relations' source; "
                        "gradcam: Grad-CAM heat maps (cam_<modality>); all: both; none: segmentation only")
    p.add_argument("--no-cam", dest="maps", action="store_const", const="none", help="the same as --maps none")
    p.add_argument("--per-target", "--cam-per-target", dest="per_target", action="store_true",
                   help="also write one map per target and modality (effect_<target>_<modality>, cam_...)")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="nii.gz", help="output image format")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                   help="json: one JSON object per line on stdout (for the Slicer module)")
    return p


def _train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train or fine-tune a model on your cases",
                       description="Train (or fine-tune with --init) a model on a dataset folder, "
                                   "datalist or CSV. RUN/bundle holds the best validation Dice. "
                                   "Several GPUs or machines: launch with torchrun (see docs/training.md).")
    p.add_argument("--data", metavar="DIR_OR_FILE", help="dataset folder, dataset.json datalist, or cases CSV")
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=sorted(PRESETS), default=None, help="start from a preset card")
    model.add_argument("--card", metavar="FILE", help="start from a card file")
    p.add_argument("--init", metavar="BUNDLE", help="fine-tune from this bundle (its card)")
    p.add_argument("--freeze-encoders", action="store_true", default=None, help="keep the encoders fixed")
    p.add_argument("--arch", choices=ARCHITECTURES, default=None, help="architecture (ciml)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, metavar="N", help="optimiser steps (card: training.max_steps)")
    steps.add_argument("--epochs", type=int, metavar="N", help="passes over the training cases")
    p.add_argument("--max-minutes", metavar="M",
                   help="wall-clock limit in minutes (> 0): then stop after the current step, validate and keep "
                        "the best bundle (the latest weights when nothing was validated); without "
                        "--max-steps or --epochs the time alone ends the run")
    p.add_argument("--val-fraction", type=float, metavar="F", help="share of labelled cases for validation (0.2)")
    p.add_argument("--bundle", choices=BUNDLE_CHOICES, default=None,
                   help="RUN/bundle: the best validation Dice (best, the default) or the last weights (last)")
    p.add_argument("--keep-bundles", action="store_true", default=None,
                   help="also keep the weights at every validation step, in RUN/bundles/step-N")
    p.add_argument("--layout", help="dataset layout, when detection is not wanted (see docs/data-layouts.md)")
    p.add_argument("--unlabeled", metavar="DIR", help="unlabelled cases for semi-supervised training (DTC)")
    p.add_argument("--missing-rates", metavar="NAME=P,...", help="train for missing modalities (PASSION)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--seed", type=int, help="random seed (card: training.seed)")
    p.add_argument("--device", choices=DEVICES, default=None, help="where to train (auto)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON settings; the command line overrides them")
    p.add_argument("--num-workers", type=int, help="data loader processes (0)")
    p.add_argument("--cache", choices=CACHE_MODES, help="cache of loaded cases (memory)")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar", help="progress display")
    return p


def _evaluate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="score a model on labelled cases (Dice, HD95, lesion-wise)",
                       description="Segment every labelled case of a dataset with a bundle and score the "
                                   "label map it writes on the label's grid, per target: MONAI's Dice and "
                                   "HD95 (empty masks scored as the BraTS challenge does) and BraTS 2023's "
                                   "lesion-wise Dice and HD95 (see docs/real-scans.md).")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="the bundle folder")
    p.add_argument("--data", required=True, metavar="DIR_OR_FILE", help="dataset folder, datalist or CSV")
    p.add_argument("--layout", help="dataset layout, when detection is not wanted")
    p.add_argument("--out", metavar="FILE.json", help="also write the scores here (never overwrites)")
    p.add_argument("--missing", metavar="NAME,...", help="evaluate as if these modalities were absent")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar")
    return p


def _info(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="check a model bundle and summarise it",
                       description="Check a model bundle (format, weights hash, weights fit the "
                                   "card) and print its card, provenance and metrics. With --gates, "
                                   "measure instead what each information gate of a CIML bundle passes "
                                   "on one case (see docs/bundle-format.md).")
    p.add_argument("--model", required=True, metavar="DIR", help="the bundle folder")
    p.add_argument("--json", action="store_true", help="print the metadata (or the gate table) as JSON instead")
    p.add_argument("--gates", action="store_true",
                   help="print each gate's KL, active channels, sigma, message-to-primary rms ratio, "
                        "attention mean and spread, and whether it collapsed (needs --case; CIML bundles only)")
    p.add_argument("--case", metavar="DIR",
                   help="with --gates: a case folder in the BraTS layout (<case>/<case>_<modality>.nii.gz, "
                        "as `ciml sample-data` writes); the gates are measured on the window of the card's "
                        "size centred on the case")
    return p


def _init(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("init", help="write an untrained model bundle for a card",
                       description="Build the network a model card describes, with seeded random "
                                   "weights, and save it as a bundle (no training provenance).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a built-in card")
    src.add_argument("--card", metavar="FILE", help="a card file (JSON or YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to write")
    p.add_argument("--arch", choices=ARCHITECTURES, default="ciml", help="network architecture")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    return p


class _OwnFlagsParser(argparse.ArgumentParser):
    """A `ciml benchmark` sub-command's parser: takes only its own flags, and answers a wrong one
    (another sub-command's, say) in one line, exit code 2, instead of the usage text."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# `ciml benchmark <kind>`: each kind's one-line help, in the order `ciml benchmark` lists them.
BENCHMARKS = {
    "speed": "time CIML segmentation, its effects and Grad-CAM maps, early fusion, SegResNet and a Captum loop "
             "on one synthetic BraTS-sized case",
    "pipelines": "time whole `ciml segment` processes against MONAI's BraTS SegResNet bundle pipeline",
    "profile": "where the time of one window goes: each encoder level, gate and decoder block",
    "plans": "Dice, agreement and seconds of each window plan of a trained bundle on unseen cases",
    "information": "whether a brats bundle takes each hidden structure from the modality that shows it",
    "relations": "the relations table's shares against real runs without each modality, on unseen cases",
}


def _benchmark(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("benchmark", help="speed, cost and information benchmarks (one sub-command each)",
                       description="Benchmarks of speed, cost and what a model uses, against the performance "
                                   "targets (docs/performance-targets.md). Every run prints a table and writes a "
                                   "result file: JSON with the numbers, the command, the commit, the machine and "
                                   "the date (--out FILE, or ciml-results/benchmark.<kind>-<date>.json here).")
    kinds = p.add_subparsers(dest="benchmark", metavar="KIND", parser_class=_OwnFlagsParser)
    parsers = {name: kinds.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
               for name, text in BENCHMARKS.items()}
    p.set_defaults(benchmarks=BENCHMARKS)
    for name, k in parsers.items():
        k.add_argument("--out", metavar="FILE.json",
                       help="the result file (default: ciml-results/benchmark.<kind>-<date>.json; never overwritten)")
        k.add_argument("--threads", type=_at_least_one, metavar="N", help="torch threads (default: torch's choice)")
        if name in ("plans", "information", "relations"):
            k.add_argument("--model", metavar="BUNDLE", help="the trained bundle (default: the built-in model)")
            k.add_argument("--cases", type=_at_least_one, default=6, metavar="N", help="sample cases (default 6)")
            k.add_argument("--seed", type=int, default=UNSEEN_SEED,
                           help=f"seed of the sample cases (default {UNSEEN_SEED}: cases the built-in model was "
                                "not trained on)")
        else:
            k.add_argument("--size", choices=SAMPLE_SIZES, default="full",
                           help="full: 4 x 240 x 240 x 155 at 1 mm (default); small: 96 x 96 x 64 at 2.5 mm")
            k.add_argument("--repeats", type=_at_least_one, default=3, metavar="N",
                           help="timed runs (default 3)")
            k.add_argument("--preset", choices=sorted(PRESETS), default="brats", help="model card preset (default brats)")
            k.add_argument("--model", metavar="BUNDLE",
                           help="this bundle's trained CIML network (its card) instead of the preset's random weights")
            k.add_argument("--seed", type=int, default=0, help="seed of the random weights and the case (default 0)")
    speed = parsers["speed"]
    speed.add_argument("--device", choices=DEVICES, default="auto", help="auto (default), cpu or cuda")
    speed.add_argument("--only", metavar="NAMES",
                       help=f"comma-separated configurations to run (default all: {','.join(CONFIGS)})")
    speed.add_argument("--windows", type=_at_least_one, metavar="K",
                       help="time every configuration on K windows only and scale to the volume (quick estimate)")
    speed.add_argument("--baseline-windows", type=_at_least_one, metavar="K",
                       help="time the Captum loop on K windows only and scale to the volume (it is slow)")
    speed.add_argument("--in-process", action="store_true",
                       help="run every configuration in this process (no per-configuration peak memory on CPU)")
    parsers["pipelines"].add_argument(
        "--workdir", metavar="DIR", help="folder for the case, the bundle and the outputs (default: a temporary one)")
    parsers["profile"].add_argument(
        "--compile", action="store_true", help="also time the window through torch.compile (its first call compiles)")
    information = parsers["information"]
    information.add_argument("--variation", choices=("standard", "shifted"), default="standard",
                             help="the sample cases' variation (shifted: settings outside the training range)")
    information.add_argument("--device", choices=DEVICES, default="auto", help="auto (default), cpu or cuda")
    parsers["relations"].add_argument("--device", choices=DEVICES, default="auto", help="auto (default), cpu or cuda")
    return p


def _study(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("study", help="accuracy study: every method trained with the same budget, scored on held-out cases",
                       description="Train CIML, the baselines and the ablations of a task's study plan with the "
                                   "same budget and seeds, evaluate them on held-out synthetic cases (also with "
                                   "each auxiliary missing), and write results.json, results.md, plots and "
                                   "result.json (the numbers with the command, the commit, the machine and the "
                                   "date). Rerun to continue an interrupted study. See docs/BENCHMARKS.md.")
    p.add_argument("--task", required=True, choices=sorted(PLANS), help="which study plan")
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (data, runs, results, result.json)")
    p.add_argument("--seeds", metavar="S,...", help="training seeds (plan: 0,1,2)")
    p.add_argument("--methods", metavar="NAME,...", help="only these of the plan's methods")
    p.add_argument("--max-steps", type=int, metavar="N", help="training steps of every run (plan's budget)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained at once (default 1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per run (default: torch's choice; use cores / --jobs)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where every run trains and is evaluated (default cpu: the documented studies' machine)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from the runs so far")
    return p


# Runner module (ciml/cli/<name>.py) -> its parser, in the order `ciml --help` lists them.
COMMANDS = {"card": _card, "sample_data": _sample_data, "demo": _demo, "segment": _segment, "train": _train, "evaluate": _evaluate, "info": _info, "init": _init, "benchmark": _benchmark, "study": _study}
