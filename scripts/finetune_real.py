"""Fine-tuning on a user's own real cases, measured by cross-validation.

The labelled cases in REAL_DIR (sorted by name) are split into FOLDS folds: fold k holds out
every FOLDS-th case from the k-th. Each fold runs the recipe the module's Fine-tuning section
runs, on the other cases, with a wall-clock limit:

    ciml train --init MODEL --data TRAIN --out RUN --max-minutes MINUTES --keep-bundles

(``--scratch``: the same network, trained from random weights, ``--card`` instead of
``--init``; with ``--arch early-fusion`` or ``maml`` the baselines of the same card, early fusion
widened to CIML's parameter count; ``--steps`` gives every run the same step budget instead of
the same minutes, so that runs may share the CPU, ``--threads`` each; ``--processes N`` trains
data-parallel in N processes with ``torchrun``, each with its own batch). ``ciml train`` holds out
its own validation share of TRAIN to choose RUN/bundle; the held-out fold is never seen. Every
kept bundle (one per validation step; ``--last-only``: the last), the starting model (minute 0)
and the chosen bundle are then scored on the held-out cases with ``ciml evaluate``, which gives
Dice against minutes of training.

Each fold's scores go to WORK/<name>/fold-K.json as soon as it ends (an existing one is kept, so
a stopped experiment continues), and all folds to --out. The cases are linked, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))

from ciml.bundle import read_card  # noqa: E402
from ciml.choices import ARCHITECTURES  # noqa: E402
from ciml.data import list_cases  # noqa: E402
from ciml.research.record import script_envelope, write_record  # noqa: E402

BUILTIN = "CIMLSegmentation/Resources/Models/brats-sample"
CIML = [sys.executable, "-m", "ciml"]


def folds_of(cases: list[str], folds: int) -> list[list[str]]:
    """Held-out cases per fold: every ``folds``-th case of the sorted list."""
    ordered = sorted(cases)
    return [ordered[k::folds] for k in range(folds)]


def link_cases(real: Path, names: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = folder / name
        if not link.exists():
            link.symlink_to((real / name).absolute(), target_is_directory=True)
    return folder


def evaluate(model: Path | str, data: Path, out: Path) -> dict:
    """``ciml evaluate``'s results for one bundle on the held-out cases (kept in ``out``)."""
    if not out.is_file():
        subprocess.run([*CIML, "evaluate", "--model", str(model), "--data", str(data), "--out", str(out),
                        "--progress", "none"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["results"]


def run_fold(args: argparse.Namespace, k: int, held_out: list[str], all_cases: list[str], work: Path) -> dict:
    fold = work / f"fold-{k}"
    train = link_cases(args.real, [c for c in all_cases if c not in held_out], fold / "train")
    test = link_cases(args.real, held_out, fold / "test")
    run = fold / "run"
    start = ["--card", str(work / "card.json")] if args.scratch else ["--init", args.model]
    budget = ["--max-steps", str(args.steps)] if args.steps else ["--max-minutes", str(args.minutes)]
    spread = ["--standalone", "--nproc_per_node", str(args.processes), "-m", "ciml"]  # torchrun's arguments
    launcher = CIML if args.processes == 1 else [sys.executable, "-m", "torch.distributed.run", *spread]
    shown = ["ciml"] if args.processes == 1 else ["torchrun", *spread]  # the command as the docs give it
    command = [*launcher, "train", *start, "--arch", args.arch, "--data", str(train), "--out", str(run), *budget,
               *(["--val-fraction", str(args.val_fraction)] if args.val_fraction is not None else []),
               *(["--config", str(args.config)] if args.config else []),
               *(["--freeze-encoders"] if args.freeze_encoders else []),
               "--keep-bundles", "--device", "cpu", "--progress", "none"]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    began = time.monotonic()
    if not (run / "bundle").is_dir():
        subprocess.run(command, check=True, cwd=ROOT, env=env)
    wall_s = round(time.monotonic() - began, 1)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    elapsed = {e["step"]: e["elapsed_s"] for e in log if e["event"] in ("validation", "bundle_kept")}
    curve = [] if args.scratch else [{"step": 0, "minutes": 0.0, **_means(evaluate(args.model, test, fold / "step-0.json"))}]
    kept = sorted((run / "bundles").iterdir(), key=_step_of)
    for bundle in kept[-1:] if args.last_only else kept:
        step = _step_of(bundle)
        scores = evaluate(bundle, test, fold / f"{bundle.name}.json")
        curve.append({"step": step, "minutes": round(elapsed[step] / 60, 2), **_means(scores)})
    chosen = evaluate(run / "bundle", test, fold / "chosen.json")
    parameters = json.loads((run / "bundle" / "metadata.json").read_text()).get("parameters")
    return {"fold": k, "held_out": held_out, "train_cases": len(all_cases) - len(held_out), "parameters": parameters,
            "command": shlex.join([*shown, *command[len(launcher):]]).replace(str(train), "TRAIN").replace(str(run), "RUN")
                       .replace(str(work / "card.json"), "CARD"), "process_wall_s": wall_s,
            "steps": max(elapsed), "chosen_step": chosen["training"].get("steps"),
            "chosen": {**_means(chosen), "cases": chosen["cases"]}, "curve": curve}


def _step_of(bundle: Path) -> int:
    """The step of a kept bundle, ``RUN/bundles/step-N``."""
    return int(bundle.name.split("-")[1])


def _means(results: dict) -> dict:
    return {key: {t: round(v, 4) for t, v in results["mean"][key].items()} for key in ("dice", "hd95")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("real", type=Path, help="folder of labelled real cases (BraTS layout)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "finetune-real", help="runs and links")
    parser.add_argument("--model", default=BUILTIN, help="the bundle to fine-tune (the built-in model)")
    parser.add_argument("--scratch", action="store_true", help="train the model's network from random weights")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=ARCHITECTURES[0],
                        help="architecture (not ciml: with --scratch)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=30.0, help="wall-clock limit per fold")
    budget.add_argument("--steps", type=int, help="a step budget per fold instead of minutes")
    parser.add_argument("--val-fraction", type=float, help="ciml train's own validation share (its default: 0.2)")
    parser.add_argument("--threads", type=int, help="torch threads per training run (OMP_NUM_THREADS)")
    parser.add_argument("--processes", type=int, default=1,
                        help="data-parallel training processes (torchrun); each takes its own batch")
    parser.add_argument("--config", type=Path, help="a ciml train --config file (a variant of the recipe)")
    parser.add_argument("--freeze-encoders", action="store_true", help="ciml train --freeze-encoders")
    parser.add_argument("--variant", help="the variant's name: its runs go to WORK/<start>-<variant>")
    parser.add_argument("--last-only", action="store_true",
                        help="score only the last kept bundle and the chosen one, not the whole curve")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--only", type=int, nargs="*", help="run these folds only (0-based)")
    parser.add_argument("--out", type=Path, required=True, help="result file of all folds run so far")
    args = parser.parse_args(argv)
    if args.arch != "ciml" and not args.scratch:
        parser.error("--arch early-fusion and maml train from random weights: add --scratch")
    name = ("scratch" if args.scratch else "init") + ("" if args.arch == "ciml" else f"-{args.arch}") \
        + (f"-{args.variant}" if args.variant else "")
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    if args.scratch and not (work / "card.json").is_file():
        read_card(args.model).to_json(work / "card.json")
    cases = sorted(r["case"] for r in list_cases(str(args.real)) if r.get("label"))
    done = []
    for k, held_out in enumerate(folds_of(cases, args.folds)):
        path = work / f"fold-{k}.json"
        if args.only is not None and k not in args.only and not path.is_file():
            continue
        if not path.is_file():
            path.write_text(json.dumps(run_fold(args, k, held_out, cases, work), indent=2) + "\n")
        done.append(json.loads(path.read_text()))
    results = {"model": args.model, "start": name, "arch": args.arch, "variant": args.variant,
               "minutes": None if args.steps else args.minutes, "max_steps": args.steps, "cases": len(cases),
               "folds": done, "mean_chosen": _mean_of([f["chosen"] for f in done]),
               "mean_last": _mean_of([max(f["curve"], key=lambda p: p["step"]) for f in done])}
    record = script_envelope("finetune-real", results, "finetune_real.py", argv)
    write_record(record, args.out)
    return 0


def _mean_of(scores: list[dict]) -> dict:
    return {key: {t: round(sum(s[key][t] for s in scores) / len(scores), 4) for t in scores[0][key]}
            for key in ("dice", "hd95")} if scores else {}


if __name__ == "__main__":
    raise SystemExit(main())
