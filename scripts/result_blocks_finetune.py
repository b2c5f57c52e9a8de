"""The fine-tuning block of the docs: the built-in model fine-tuned on real cases, by fold, against
the target, and beside the same network trained from scratch for the same minutes. Renders
Markdown from the result files of ``scripts/finetune_real.py`` (``{stem: result file}``)."""

from __future__ import annotations

from result_blocks_common import machine, source, table

INIT, SCRATCH = "finetune-real-builtin", "finetune-real-scratch"
ALL_CASES = "finetune-real-builtin-no-validation"  # --val-fraction 0: all 10 cases trained, the last weights kept
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
    rows = _fold_rows(res, "the built-in model") + [_mean_row(res, "the built-in model")]
    if ALL_CASES in r:
        rows += _fold_rows(r[ALL_CASES]["results"], "the built-in model, all 10 cases trained, no validation")
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
    if SCRATCH in r:
        text += f"; from random weights: `{r[SCRATCH]['command']}`, {source(r, SCRATCH)}"
    return text + ".\n"

METHODS = {"methods-real-ciml": "CIML", "methods-real-early-fusion": "early fusion (widened to CIML's parameters)",
           "methods-real-maml": "MAML"}


def _pooled(res: dict) -> dict[str, dict[str, float]]:
    """Per case, over every fold's held-out cases (each case is held out once)."""
    return {c["case"]: c["dice"] for fold in res["folds"] for c in fold["chosen"]["cases"]}


def methods_real(r: dict) -> str:
    """CIML against early fusion and MAML trained from random weights on the real cases, the same
    step budget, seed and folds: mean Dice over the held-out cases, and the paired difference."""
    if "methods-real-ciml" not in r:
        return "No measurement yet.\n"
    ciml = _pooled(r["methods-real-ciml"]["results"])
    rows = []
    for stem, name in METHODS.items():
        if stem not in r:
            continue
        res = r[stem]["results"]
        cases = _pooled(res)
        mean = {t: sum(c[t] for c in cases.values()) / len(cases) for t in TARGET}
        paired = []
        for t in TARGET:
            diffs = [ciml[c][t] - cases[c][t] for c in cases if c in ciml]
            mu = sum(diffs) / len(diffs)
            sd = (sum((d - mu) ** 2 for d in diffs) / max(len(diffs) - 1, 1)) ** 0.5
            wins = sum(d > 0 for d in diffs)
            paired.append(f"{mu:+.3f} ± {sd:.3f} ({wins}/{len(diffs)})")
        rows.append([name, f"{res['folds'][0].get('parameters') or 0:,}", str(res["max_steps"] or res["minutes"]),
                     str(len(cases)), *(f"{mean[t]:.3f}" for t in TARGET),
                     " / ".join(f"{res['mean_last']['dice'][t]:.3f}" for t in TARGET),
                     *(["–"] * len(TARGET) if stem == "methods-real-ciml" else paired), source(r, stem)])
    first = r["methods-real-ciml"]
    return (table(["method", "parameters", "steps", "held-out cases", *(f"Dice {t}, bundle kept" for t in TARGET),
                   "Dice, last weights (WT / TC / ET)",
                   *(f"CIML minus it, {t} (cases CIML wins)" for t in TARGET), "result file, date"], rows)
            + f"\n`{first['command']}`, and the same with `--arch early-fusion` and `--arch maml`: every method "
              "from random weights, the same folds, step budget and seed; the paired difference is per held-out "
              f"case (mean ± SD over cases). {machine(r, 'methods-real-ciml')}.\n")
