"""`ciml train`: train or fine-tune a model on a dataset; the result is a bundle in RUN/bundle."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ciml.bundle import read_card
from ciml.bundle.metadata import stored_card
from ciml.choices import BUNDLE_CHOICES
from ciml.config import card_from_dict
from ciml.data import check_records, list_cases
from ciml.data.datasets import split_records
from ciml.errors import CIMLError, user_error
from ciml.progress import Progress
from ciml.training.run_config import (
    effective_card,
    max_minutes,
    merged_settings,
    parse_rates,
    read_config,
    steps_for_epochs,
)
from ciml.training.trainer import RunOptions, Trainer


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    max_minutes(args.max_minutes)  # a bad limit is refused before any case is read
    if args.resume:
        card, options, records = _resumed(args)
    else:
        card, options, records = _fresh(args)
    try:
        summary = Trainer(card, options, records["train"], records["validation"], records["unlabelled"],
                          progress).run(resume=args.resume)
    except BaseException as exc:
        cause = user_error(exc) or exc
        progress.error(str(cause) or type(cause).__name__)
        raise
    progress.message(f"done: {summary['steps']} steps in {summary['wall_time_s']} s"
                     + (f", stopped by the time limit of {options.max_minutes:g} min" if summary["stopped"] else "") + "; "
                     f"best mean Dice {summary['best_mean_dice']} at step {summary['best_step']}; "
                     f"bundle {summary['bundle']}")
    return 0


def _fresh(args: argparse.Namespace):
    config = read_config(args.config) if args.config else {}
    settings = merged_settings(config, {
        "preset": args.preset, "card": args.card, "init": args.init, "arch": args.arch,
        "max_steps": args.max_steps, "max_minutes": args.max_minutes, "epochs": args.epochs, "val_fraction": args.val_fraction,
        "device": args.device, "layout": args.layout, "unlabeled": args.unlabeled, "seed": args.seed,
        "freeze_encoders": args.freeze_encoders, "keep_bundles": args.keep_bundles, "bundle": args.bundle,
        "num_workers": args.num_workers, "cache": args.cache,
        "missing_rates": parse_rates(args.missing_rates) if args.missing_rates else None})
    data = args.data or config.get("data")
    if not data:
        raise CIMLError("--data is required (a dataset folder, dataset.json or cases CSV)")
    base = read_card(settings["init"]) if settings.get("init") else None
    card = effective_card(settings, base)
    records = list_cases(data, settings.get("layout"))
    check_records(records, card.modality_names, require_label=False)
    train, validation = split_records(records, float(settings.get("val_fraction", 0.2)), card.training.seed)
    if not [r for r in train if r.get("label")]:
        raise CIMLError(f"{data}: no labelled cases to train on")
    unlabelled = []
    if settings.get("unlabeled"):
        unlabelled = [{k: v for k, v in r.items() if k != "label"} for r in list_cases(settings["unlabeled"])]
        check_records(unlabelled, card.modality_names)
    if settings.get("bundle", BUNDLE_CHOICES[0]) not in BUNDLE_CHOICES:
        raise CIMLError(f"bundle: expected one of {', '.join(BUNDLE_CHOICES)}, got {settings['bundle']!r}")
    max_steps = settings.get("max_steps")
    if settings.get("epochs"):
        max_steps = steps_for_epochs(int(settings["epochs"]), len(train), card.training.batch_size)
    options = RunOptions(
        out=args.out, arch=settings.get("arch") or "ciml", max_steps=max_steps,
        max_minutes=max_minutes(settings.get("max_minutes")),
        device=settings.get("device") or "auto", init=settings.get("init"),
        freeze_encoders=bool(settings.get("freeze_encoders")), keep_bundles=bool(settings.get("keep_bundles")),
        bundle=settings.get("bundle") or BUNDLE_CHOICES[0],
        num_workers=int(settings.get("num_workers") or 0),
        cache=settings.get("cache") or "memory", command="ciml " + shlex.join(sys.argv[1:]),
        data=f"{data} ({len(train)} training, {len(validation)} validation, {len(unlabelled)} unlabelled cases)")
    return card, options, {"train": train, "validation": validation, "unlabelled": unlabelled}


def _resumed(args: argparse.Namespace):
    path = Path(args.out) / "config.json"
    if not path.is_file():
        raise CIMLError(f"cannot resume: {path} not found (is {args.out} a run folder?)")
    saved = json.loads(path.read_text())
    options = RunOptions(**{**saved["run"], "device": args.device or saved["run"]["device"]})
    if args.max_minutes is not None:  # a limit for this part of the run
        options.max_minutes = max_minutes(args.max_minutes)
    options.max_steps = saved["max_steps"]
    return card_from_dict(stored_card(saved)), options, saved["records"]
