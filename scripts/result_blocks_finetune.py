"""The docs' blocks on training with real cases: the built-in model fine-tuned, by fold, against the
target, beside the same network trained from scratch for the same minutes; and CIML against early
fusion and MAML trained on the real cases. Renders Markdown from the result files of
``scripts/finetune_real.py`` (``{stem: result file}``)."""

from __future__ import annotations

from scipy.stats import t as student_t

from result_blocks_common import machine, source, table

INIT, SCRATCH = "finetune-real-builtin", "finetune-real-scratch"
ALL_CASES = "finetune-real-builtin-no-validation"  # --val-fraction 0: all 10 cases trained, the last weights kept
# From the built-in model after its last stage (BraTS-sized gliomas), the newest first.
SIZED = ("finetune-real-builtin-sized-folds-0-1", "finetune-real-builtin-sized-fold0")
BEFORE_LAST = "the built-in model before its last stage"
TARGET = {"WT": 0.88, "TC": 0.78, "ET": 0.70}  # docs/performance-targets.md, "Fine-tuning on real scans"


def _dice(scores: dict) -> str:
    return " / ".join(f"{scores['dice'][t]:.3f}" for t in TARGET)


def _last(fold: dict) -> dict:
    """The held-out scores of the run's last weights (the end of its curve)."""
    return max(fold["curve"], key=lambda p: p["step"])


def _mean(scores: list[dict]) -> dict:
    return {"dice": {t: sum(s["dice"][t] for s in scores) / len(scores) for t in TARGET},
            "hd95": {t: sum(s["hd95"][t] for s in scores) / len(scores) for t in TARGET}}


def _fold_rows(res: dict, start: str) -> list[list[str]]:
    rows = []
    for fold in res["folds"]:
        first = next((p for p in fold["curve"] if p["step"] == 0), None)
        rows.append([start, str(fold["fold"]), ", ".join(c.replace("Brats18_", "") for c in fold["held_out"]),
                     _dice(first) if first else "–", str(fold["steps"]), str(fold["chosen_step"]),
                     _dice(fold["chosen"]), _dice(_last(fold)),
                     " / ".join(f"{fold['chosen']['hd95'][t]:.1f}" for t in TARGET)])
    return rows


def _mean_row(res: dict, start: str) -> list[str]:
    folds = res["folds"]
    firsts = [p for f in folds for p in f["curve"] if p["step"] == 0]
    chosen = res["mean_chosen"]
    return [f"**{start}, mean**", f"{len(folds)} folds", "", _dice(_mean(firsts)) if firsts else "–", "", "",
            _dice(chosen), _dice(res["mean_last"]),
            " / ".join(f"{chosen['hd95'][t]:.1f}" for t in TARGET)]


def target_met(res: dict) -> bool:
    """The module's recipe (the last weights, ``--bundle last``) against the target, three folds."""
    return len(res["folds"]) >= 3 and all(res["mean_last"]["dice"][t] >= v for t, v in TARGET.items())


def finetune_real(r: dict) -> str:
    """Per fold: the held-out cases, their Dice before fine-tuning, with the bundle ``ciml train``
    kept and with the last weights, and the mean against the target; then the same network from
    random weights, where measured."""
    if INIT not in r:
        return "No measurement yet.\n"
    res = r[INIT]["results"]
    rows = _fold_rows(res, BEFORE_LAST) + [_mean_row(res, BEFORE_LAST)]
    if ALL_CASES in r:
        rows += _fold_rows(r[ALL_CASES]["results"], f"{BEFORE_LAST}, all 10 cases trained, no validation")
    sized = next((stem for stem in SIZED if stem in r), None)
    if sized:
        rows += _fold_rows(r[sized]["results"], "the built-in model")
    if SCRATCH in r:
        rows += _fold_rows(r[SCRATCH]["results"], "random weights")
    verdict = "**met**" if target_met(res) else "**not met**"
    text = (table(["start", "fold", "held-out cases", "Dice before (WT / TC / ET)", "steps run", "bundle kept (step)",
                   "Dice, bundle kept", "Dice, last weights", "HD95, bundle kept (mm)"], rows)
            + f"\nTarget after {res['minutes']:g} minutes on {res['folds'][0]['train_cases']} cases: mean Dice of the last "
              "weights (the module's recipe) on the held-out cases " + ", ".join(f"{t} >= {v:.2f}" for t, v in TARGET.items()) + f": {verdict}. "
              f"`{r[INIT]['command']}` (the folder of the real cases passed by path; "
              f"each fold runs `{res['folds'][0]['command']}`); "
              f"{machine(r, INIT)}; {source(r, INIT)}")
    if ALL_CASES in r:
        text += f"; without validation: `{r[ALL_CASES]['command']}`, {source(r, ALL_CASES)}"
    if sized:
        text += f"; from the built-in model: `{r[sized]['command']}`, {source(r, sized)}"
    if SCRATCH in r:
        text += f"; from random weights: `{r[SCRATCH]['command']}`, {source(r, SCRATCH)}"
    return text + ".\n"

METHODS = {"methods-real-ciml": "CIML", "methods-real-early-fusion": "early fusion (widened to CIML's parameters)",
           "methods-real-maml": "MAML"}


def _pooled(res: dict) -> dict[str, dict[str, float]]:
    """Per case, over every fold's held-out cases (each case is held out once)."""
    return {c["case"]: c["dice"] for fold in res["folds"] for c in fold["chosen"]["cases"]}


def _paired(r: dict, stem: str, target: str) -> tuple[float, float, float, int, int]:
    """CIML minus ``stem`` per held-out case: mean, 95 % interval (Student's t), wins, cases."""
    ciml, other = _pooled(r["methods-real-ciml"]["results"]), _pooled(r[stem]["results"])
    diffs = [ciml[c][target] - other[c][target] for c in other if c in ciml]
    mu = sum(diffs) / len(diffs)
    sd = (sum((d - mu) ** 2 for d in diffs) / max(len(diffs) - 1, 1)) ** 0.5
    half = student_t.ppf(0.975, len(diffs) - 1) * sd / len(diffs) ** 0.5
    return mu, mu - half, mu + half, sum(d > 0 for d in diffs), len(diffs)


def _verdict(r: dict, stem: str) -> str:
    """Whether CIML is ahead of ``stem`` beyond the interval on some target, and behind on none."""
    intervals = [_paired(r, stem, t)[1:3] for t in TARGET]
    if any(high < 0 for _, high in intervals):
        return "behind on " + ", ".join(t for t, (_, high) in zip(TARGET, intervals) if high < 0)
    if any(low > 0 for low, _ in intervals):
        return "ahead on " + ", ".join(t for t, (low, _) in zip(TARGET, intervals) if low > 0)
    return "no difference beyond the interval"


def methods_real(r: dict) -> str:
    """CIML against early fusion and MAML trained from random weights on the real cases, the same
    step budget, seed and folds: mean Dice over the held-out cases, and the paired difference."""
    if "methods-real-ciml" not in r:
        return "No measurement yet.\n"
    rows = []
    for stem, name in METHODS.items():
        if stem not in r:
            continue
        res = r[stem]["results"]
        cases = _pooled(res)
        mean = {t: sum(c[t] for c in cases.values()) / len(cases) for t in TARGET}
        paired = [f"{mu:+.3f} [{low:+.3f}, {high:+.3f}] ({wins}/{n})"
                  for mu, low, high, wins, n in (_paired(r, stem, t) for t in TARGET)]
        rows.append([name, f"{res['folds'][0].get('parameters') or 0:,}", str(res["max_steps"] or res["minutes"]),
                     str(len(cases)), *(f"{mean[t]:.3f}" for t in TARGET),
                     *(["–"] * len(TARGET) if stem == "methods-real-ciml" else paired), source(r, stem)])
    first = r["methods-real-ciml"]
    kept = {f["chosen_step"] == f["steps"] for stem in METHODS if stem in r for f in r[stem]["results"]["folds"]}
    return (table(["method", "parameters", "steps", "held-out cases", *(f"Dice {t}" for t in TARGET),
                   *(f"CIML minus it, {t}: mean [95 % CI] (cases CIML wins)" for t in TARGET),
                   "result file, date"], rows)
            + f"\n`{first['command']}`, and the same with `--arch early-fusion` and `--arch maml`: every method "
              "from random weights, the same folds, step budget and seed, one thread each; the Dice is the bundle "
              "`ciml train` kept" + (" (the last step's, in every fold)" if kept == {True} else "") + ", on every "
              "case when it was held out; the paired difference is per case, with Student's t interval over the "
              f"cases. {machine(r, 'methods-real-ciml')}.\n")


def methods_claims(r: dict) -> list[list[str]]:
    """The claims row of CIML against the baselines on real scans, once all three are measured."""
    if not all(stem in r for stem in METHODS):
        return []
    steps = r["methods-real-ciml"]["results"]["max_steps"]
    n = len(_pooled(r["methods-real-ciml"]["results"]))
    verdicts = {METHODS[s].split(" (")[0]: _verdict(r, s) for s in METHODS if s != "methods-real-ciml"}
    shown = all(v.startswith("ahead") for v in verdicts.values())
    return [["CIML beats early fusion and MAML on real scans, same budget",
             f"{n} real BraTS 2018 cases, 3 folds, {steps} steps from random weights: CIML "
             + "; ".join(f"against {name}, {v}" for name, v in verdicts.items()),
             "ahead beyond the 95 % interval of the paired difference",
             "**met**" if shown else f"**not shown** at {steps} steps",
             "; ".join(source(r, s) for s in METHODS)]]


def methods_headline(r: dict) -> list[str]:
    if not all(stem in r for stem in METHODS):
        return []
    steps = r["methods-real-ciml"]["results"]["max_steps"]
    verdicts = {METHODS[s].split(" (")[0]: _verdict(r, s) for s in METHODS if s != "methods-real-ciml"}
    return [f"- **CIML against early fusion and MAML on real scans** ({steps} steps from random weights, 3 folds "
            "on a 2-core CPU): " + "; ".join(f"against {name}, {v}" for name, v in verdicts.items())
            + ". [Methods on real scans](docs/BENCHMARKS.md#ciml-against-early-fusion-and-maml-on-real-scans)"]
