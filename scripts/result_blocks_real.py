"""The real-scan blocks of the docs: the built-in model on real BraTS cases (per case, before and
after), what each part of the glioma generator buys, and the losses without each sequence. Each
renders Markdown from the result files (``{stem: result file}``), as ``result_blocks`` does."""

from __future__ import annotations

from result_blocks_common import machine, source, table

REAL, UNCLEANED = "builtin-real-brats18", "builtin-real-brats18-no-cleanup"
BEFORE = "builtin-real-brats18-two-stages"  # the built-in model before its last stage (BraTS-sized gliomas)
PHANTOM_MODEL = "builtin-real-brats18-phantom-model"  # the model trained on the phantom alone
STAGE_TWO_UNCLEANED = "builtin-real-brats18-no-cleanup-two-stages"  # stage 2, every piece of tumour kept
GENERATOR_VARIATIONS = {  # result file stem -> the training data of the variation
    "generator-standard": "glioma, standard",
    "generator-random-tumour-contrast": "glioma without the measured tumour contrast (every class at a random z)",
    "generator-no-mass-effect": "glioma without the mass effect",
    "generator-no-hard-negatives": "glioma without the hard negatives (FLAIR-bright cortex, enhancing dura)",
    "generator-clean-scanner": "glioma without the scanner randomisation (bias, gamma, thick slices, noise, skull strip)",
}
SEQUENCES = ("t1", "t1ce", "t2", "flair")


def _mean_row(res: dict) -> list[str]:
    targets = list(res["mean"]["dice"])
    zero_tc = sum(1 for c in res["cases"] if c["dice"]["TC"] == 0)
    return [*(f"{res['mean']['dice'][t]:.3f}" for t in targets), str(zero_tc)]


def real(r: dict) -> str:
    """The built-in model on real BraTS 2018 cases: per case and mean, plain and lesion-wise, and
    against the model before its last stage."""
    res = r[REAL]["results"]
    targets = list(res["mean"]["dice"])
    row = lambda name, s: [name, *(f"{s['dice'][t]:.3f}" for t in targets), *(f"{s['hd95'][t]:.1f}" for t in targets),
                           *(f"{s['lesion_dice'][t]:.3f}" for t in targets)]
    rows = [row(c["case"], c) for c in res["cases"]] + [row("**mean**", res["mean"])]
    zero_tc = sum(1 for c in res["cases"] if c["dice"]["TC"] == 0)
    after = (table(["case", *(f"Dice {t}" for t in targets), *(f"HD95 {t} (mm)" for t in targets),
                    *(f"lesion-wise Dice {t}" for t in targets)], rows)
             + f"\nCases with TC Dice 0: {zero_tc} of {len(res['cases'])}. `{r[REAL]['command']}` "
               f"(the folder of the real cases passed by path); {machine(r, REAL)}; {source(r, REAL)}.\n")
    if UNCLEANED in r:
        means = lambda s: [*(f"{s['dice'][t]:.3f}" for t in targets), *(f"{s['hd95'][t]:.1f}" for t in targets),
                           *(f"{s['lesion_dice'][t]:.3f}" for t in targets)]
        after += ("\nThe same model keeping every piece of tumour, and dropping the pieces under 1 ml "
                  "(the built-in card's `inference.min_component_ml`: 1 ml, a tenth of the smallest tumour the "
                  "generator draws, the one value tried, not tuned on these cases):\n\n"
                  + table(["mean over the cases", *(f"Dice {t}" for t in targets), *(f"HD95 {t} (mm)" for t in targets),
                           *(f"lesion-wise Dice {t}" for t in targets)],
                          [["every piece kept", *means(r[UNCLEANED]["results"]["mean"])],
                           ["pieces under 1 ml dropped", *means(res["mean"])]])
                  + f"\n{source(r, UNCLEANED)}.\n")
    if BEFORE not in r:
        return after
    old = {c["case"]: c for c in r[BEFORE]["results"]["cases"]}
    pair = lambda a, b, key, fmt: [f"{a[key][t]:{fmt}} → {b[key][t]:{fmt}}" for t in targets]
    rows = [[c["case"], *pair(old[c["case"]], c, "dice", ".3f"), *pair(old[c["case"]], c, "hd95", ".1f")]
            for c in res["cases"] if c["case"] in old]
    rows.append(["**mean**", *pair(r[BEFORE]["results"]["mean"], res["mean"], "dice", ".3f"),
                 *pair(r[BEFORE]["results"]["mean"], res["mean"], "hd95", ".1f")])
    before_zero = sum(1 for c in r[BEFORE]["results"]["cases"] if c["dice"]["TC"] == 0)
    return (after + "\nBefore → after: the built-in model before its last stage (the phantom, then the glioma "
            "generator), then after it (gliomas of BraTS's size); synthetic data only in both.\n\n"
            + table(["case", *(f"Dice {t}" for t in targets), *(f"HD95 {t} (mm)" for t in targets)], rows)
            + f"\nCases with TC Dice 0: {before_zero} before, {zero_tc} after. Before: {source(r, BEFORE)}.\n")


def generator(r: dict) -> str:
    """What each part of the glioma generator buys on the real cases: the phantom-trained model
    fine-tuned on each variation at one budget, against the standard generator."""
    if "generator-standard" not in r:
        return "No measurement yet.\n"
    base = r["generator-standard"]["results"]["mean"]["dice"]
    rows = []
    if PHANTOM_MODEL in r:
        rows.append(["the phantom only (stage 1)", "–", *_mean_row(r[PHANTOM_MODEL]["results"]), "–",
                     source(r, PHANTOM_MODEL)])
    for stem, data in GENERATOR_VARIATIONS.items():
        if stem not in r:
            continue
        res = r[stem]["results"]
        bought = " / ".join(f"{base[t] - res['mean']['dice'][t]:+.3f}" for t in base)
        rows.append([data, str(res.get("training", {}).get("steps", "–")), *_mean_row(res),
                     "–" if stem == "generator-standard" else bought, source(r, stem)])
    if STAGE_TWO_UNCLEANED in r:
        res = r[STAGE_TWO_UNCLEANED]["results"]
        rows.append(["glioma, standard: the built-in model's second stage (285 cases)",
                     str(res.get("training", {}).get("steps", "–")), *_mean_row(res), "–", source(r, STAGE_TWO_UNCLEANED)])
    missing = [data for stem, data in GENERATOR_VARIATIONS.items() if stem not in r]
    return (table(["fine-tuned on", "steps", "WT", "TC", "ET", "cases with TC 0", "the part bought (WT / TC / ET)",
                   "result file, date"], rows)
            + "\n`bash scripts/generator_ablation.sh BASE REAL_DIR`: the phantom-trained model (BASE) fine-tuned on "
              "120 cases of each variation for 200 steps (seed 0 for data and training; \"steps\" is the step of the "
              "bundle kept, the best synthetic validation), scored on the 15 real cases, every piece of tumour kept "
              "(as in the phantom-trained card). \"The part bought\" is the standard "
              "generator's mean Dice minus the variation's. One seed per row: differences of a few hundredths are "
              "within what a second seed could move."
            + (" Not measured yet: " + "; ".join(missing) + "." if missing else "") + "\n")


def _missing_claims(r: dict) -> list[list[str]]:
    """The claims rows of the built-in model without a sequence on the real cases (at most 0.10 lost)."""
    full = r[REAL]["results"]["mean"]["dice"]
    lost = {m: {t: full[t] - r[f"{REAL}-without-{m}"]["results"]["mean"]["dice"][t] for t in full}
            for m in SEQUENCES if f"{REAL}-without-{m}" in r}
    if len(lost) < len(SEQUENCES):
        return []
    others = {m: sum(v.values()) / len(v) for m, v in lost.items() if m != "t1ce"}
    files = "; ".join(source(r, f"{REAL}-without-{m}") for m in SEQUENCES)
    return [["without T1, T2 or FLAIR the built-in model holds on real scans",
             ", ".join(f"without {m}: {v:.3f}" for m, v in others.items()) + " mean Dice lost",
             "at most 0.10 mean Dice lost", "**met**" if max(others.values()) <= 0.10 else "**not met**", files],
            ["without T1ce the whole tumour holds on real scans (ET needs T1ce)",
             f"WT Dice lost {lost['t1ce']['WT']:.3f}", "at most 0.10", "**met**" if lost["t1ce"]["WT"] <= 0.10
             else "**not met**", source(r, f"{REAL}-without-t1ce")]]


def missing_real(r: dict) -> str:
    """The built-in model on the real cases without each sequence: mean Dice and its loss."""
    rows = [["all four", *_mean_row(r[REAL]["results"]), "–", source(r, REAL)]]
    full = r[REAL]["results"]["mean"]["dice"]
    for sequence in SEQUENCES:
        stem = f"{REAL}-without-{sequence}"
        if stem in r:
            res = r[stem]["results"]
            lost = " / ".join(f"{full[t] - res['mean']['dice'][t]:.3f}" for t in full)
            rows.append([f"without {sequence}", *_mean_row(res), lost, source(r, stem)])
    return (table(["sequences", "WT", "TC", "ET", "cases with TC 0", "Dice lost (WT / TC / ET)", "result file, date"], rows)
            + "\n`ciml evaluate --model CIMLSegmentation/Resources/Models/brats-sample --data REAL_DIR --missing NAME`: "
              "the sequence is withheld (zero-filled and marked absent), as when a case lacks it.\n")


