"""Running a study plan: the data, one ``ciml train`` per (method, seed), then ``ciml evaluate``
and ``ciml segment`` on the held-out cases.

Every step is the ordinary command a user would type, run as a subprocess with its log kept next
to its output, so a study's number can be reproduced (or debugged) by rerunning one logged
command. Steps whose output exists are skipped and a killed training resumes from its
checkpoint, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ciml.config import card_from_dict, preset_dict
from ciml.errors import CIMLError
from ciml.research.study.plan import METHODS, StudyPlan

CIML = [sys.executable, "-m", "ciml.cli.main"]
TRAINED = "trained"  # marker written once a run's `ciml train` exited 0


@dataclass
class Step:
    """One command and the file that shows it is done."""

    command: list[str]
    output: Path
    log: Path


@dataclass
class Job:
    """Steps that must run in order (train, then evaluate and segment the trained bundle)."""

    name: str
    steps: list[Step] = field(default_factory=list)


def data_folders(out: Path) -> dict[str, Path]:
    data = out / "data"
    return {"train": data / "train", "test": data / "test", "few": data / "few", "unlabelled": data / "unlabelled"}


def prepare_data(plan: StudyPlan, out: Path) -> dict[str, Path]:
    """Generate the training and held-out cases and, for the semi-supervised study, split the
    training cases into a few labelled ones and the rest without labels."""
    folders = data_folders(out)
    for split, cases, seed in (("train", plan.train_cases, plan.data_seed), ("test", plan.test_cases, plan.test_seed)):
        if not folders[split].exists():
            _run([*CIML, "sample-data", "--kind", plan.task, "--cases", str(cases), "--seed", str(seed),
                  "--size", plan.size, "--out", str(folders[split])], out / "logs" / f"data-{split}.log")
    if plan.semi_supervised and not folders["few"].exists():
        cases = sorted(p for p in folders["train"].iterdir() if p.is_dir())
        if len(cases) <= plan.few_labelled:
            raise CIMLError(f"the semi-supervised study needs more than {plan.few_labelled} training cases")
        staging = folders["few"].with_name("few.partial")
        for case in cases[:plan.few_labelled]:
            shutil.copytree(case, staging / case.name, dirs_exist_ok=True)
        unlabelled = folders["unlabelled"].with_name("unlabelled.partial")
        for case in cases[plan.few_labelled:]:
            (unlabelled / case.name).mkdir(parents=True, exist_ok=True)
            for image in case.iterdir():
                if not image.name.startswith(f"{case.name}_seg"):
                    shutil.copy2(image, unlabelled / case.name / image.name)
        unlabelled.replace(folders["unlabelled"])
        staging.replace(folders["few"])
    return folders


def run_folder(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / method / f"seed{seed}"


def train_step(plan: StudyPlan, out: Path, method: str, seed: int, device: str = "cpu") -> Step:
    m, folders, run = METHODS[method], data_folders(out), run_folder(out, method, seed)
    log = run.with_suffix(".train.log")
    if (run / "checkpoints" / "last.pt").exists():
        return Step([*CIML, "train", "--resume", "--out", str(run), "--device", device, "--progress", "none"],
                    run / TRAINED, log)
    if run.exists() and not (run / TRAINED).exists():
        # Stopped before its first checkpoint: nothing to resume, and `ciml train` never writes
        # into an existing run, so the remains are moved aside (kept, not deleted).
        run.replace(run.with_name(f"{run.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))
    card_file = out / "cards" / f"{method}.json"
    command = [*CIML, "train", "--data", str(folders["few" if m.labelled == "few" else "train"]),
               "--card", str(card_file), "--arch", m.arch, "--seed", str(seed), "--out", str(run),
               "--val-fraction", str(plan.val_fraction), "--device", device, "--progress", "none"]
    if m.missing_modalities:
        command += ["--missing-rates", ",".join(f"{a}={r}" for a, r in plan.training_missing_rates().items())]
    if m.unlabelled:
        command += ["--unlabeled", str(folders["unlabelled"])]
    return Step(command, run / TRAINED, log)


def evaluate_step(out: Path, method: str, seed: int, missing: str | None = None, device: str = "cpu") -> Step:
    run = run_folder(out, method, seed)
    name = f"eval-missing-{missing}" if missing else "eval"
    command = [*CIML, "evaluate", "--model", str(run / "bundle"), "--data", str(data_folders(out)["test"]),
               "--out", str(run / f"{name}.json"), "--device", device, "--progress", "none"]
    if missing:
        command += ["--missing", missing]
    return Step(command, run / f"{name}.json", run / f"{name}.log")


def segment_step(plan: StudyPlan, out: Path, method: str, seed: int, case: Path, device: str = "cpu") -> Step:
    """The one-case figure's segmentation (with effect maps for CIML)."""
    run = run_folder(out, method, seed)

    names = [m["name"] for m in preset_dict(plan.task)["modalities"]]
    inputs = [f"--input={m}={case / f'{case.name}_{m}.nii.gz'}" for m in names]
    command = [*CIML, "segment", "--model", str(run / "bundle"), *inputs, "--out", str(run / "case"),
               "--device", device, "--progress", "none"]
    if method != "ciml":
        command.append("--no-cam")
    return Step(command, run / "case" / "report.json", run / "segment.log")


def figure_case(out: Path) -> Path:
    """The held-out case shown in the figure: the first one."""
    return sorted(p for p in data_folders(out)["test"].iterdir() if p.is_dir())[0]


def jobs(plan: StudyPlan, out: Path, device: str = "cpu") -> list[Job]:
    """Every (method, seed) job of the plan, seeds outermost so that a partial study has every
    method at the first seeds; ``device`` is ``ciml``'s ``--device`` for every step."""
    result, case = [], figure_case(out)
    for seed in plan.seeds:
        for method in plan.all_methods:
            if not plan.applicable(method):
                continue
            job = Job(f"{method} seed {seed}", [train_step(plan, out, method, seed, device),
                                                evaluate_step(out, method, seed, device=device)])
            if method in plan.missing_models:
                job.steps += [evaluate_step(out, method, seed, a, device) for a in plan.auxiliaries()]
            if seed == plan.seeds[0] and method in plan.methods:
                job.steps.append(segment_step(plan, out, method, seed, case, device))
            result.append(job)
    return result


def write_cards(plan: StudyPlan, out: Path) -> None:
    """Each method's card, written once: a rerun trains exactly what the first run trained."""

    (out / "cards").mkdir(parents=True, exist_ok=True)
    for method in plan.all_methods:
        path = out / "cards" / f"{method}.json"
        card = plan.card(method)
        card_from_dict(card)  # a plan that builds an invalid card fails here, before any training
        if not path.exists():
            path.write_text(json.dumps(card, indent=2) + "\n")


def run_study(plan: StudyPlan, out: Path, workers: int = 1, threads: int | None = None,
              on_event: Callable[[str], None] = print, device: str = "cpu") -> list[str]:
    """Run every job of the plan on ``device``; returns the failed jobs' messages (empty when all
    passed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(_plan_record(plan), indent=2) + "\n")
    write_cards(plan, out)
    prepare_data(plan, out)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch sizes its thread pool from it at import
    all_jobs = jobs(plan, out, device)
    failures: list[str] = []

    def run_job(job: Job) -> None:
        started = time.monotonic()
        for step in job.steps:
            if step.output.exists():
                continue
            try:
                _run(step.command, step.log, env)
            except CIMLError as exc:
                failures.append(f"{job.name}: {exc}")
                on_event(f"FAILED {job.name}: {exc}")
                return
            if step.output.name == TRAINED:
                step.output.touch()
        on_event(f"done {job.name} ({time.monotonic() - started:.0f} s)")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run_job, all_jobs))
    return failures


def _run(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise CIMLError(f"exit {code} from `{' '.join(command[2:5])} ...`; see {log}")


def _plan_record(plan: StudyPlan) -> dict:
    return {**asdict(plan), "methods_described": {m: METHODS[m].description for m in plan.all_methods}}
