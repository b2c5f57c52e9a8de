"""The result blocks of the docs: one function per block name, each rendering Markdown from the
result files (``{stem: result file}``, as :func:`render_results.load_results` reads them).
Verdicts are computed here, not written: two results differ "beyond the spread" only where
their mean ± SD intervals do not touch, and only results of one budget are compared."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ciml.research.information import structure_summary
from ciml.research.relations import relations_summary
from ciml.research.targets import MEMORY_TARGET_BYTES, PIPELINE_RATIOS
from result_blocks_common import machine, pm, source, spread, table
from result_blocks_finetune import INIT, TARGET, finetune_real, methods_claims, methods_headline, methods_real, target_met
from result_blocks_real import REAL, _missing_claims, generator, missing_real, real


MEMORY_BOUND = f"under {MEMORY_TARGET_BYTES / 1e9:g} GB"


def _method(results: dict, stem: str, method: str) -> dict:
    return results[stem]["results"]["methods"][method]


# ---------------------------------------------------------------------------------------------
# blocks


def _finetune_claims(r: dict) -> list[list[str]]:
    """The claims row of fine-tuning the built-in model on real cases, once measured."""
    if INIT not in r:
        return []
    res = r[INIT]["results"]
    mean = res["mean_last"]["dice"]
    return [[f"fine-tuned on {res['folds'][0]['train_cases']} real cases in {res['minutes']:g} minutes on 2 CPU cores",
             f"{len(res['folds'])} folds from the built-in model before its last stage, the last weights (the module's "
             "recipe), mean Dice on the held-out cases: " + ", ".join(f"{t} {mean[t]:.3f}" for t in TARGET),
             ", ".join(f"{t} >= {v:.2f}" for t, v in TARGET.items()) + " (three folds)",
             "**met**" if target_met(res) else "**not met**", source(r, INIT)]]


def _segment_real_claims(r: dict) -> list[list[str]]:
    """The claims row of the built-in model's whole process on a real case, with its default maps:
    the newest of the interleaved measurements, each against what it replaced."""
    against = {"segment-real-last-stage": "the model before its last stage, the same code",
               "segment-real-now": "the tree before the resampling boxes, the lighter MONAI import and the "
                                   "overlapped writing stage"}
    stem = next((s for s in against if s in r), None)
    if stem is None:
        return []
    res = r[stem]["results"]
    now = res["median_s"]["this tree"]
    return [["the built-in model on a real BraTS case (240 x 240 x 155, 1 mm), default maps, whole `ciml segment` process",
             f"{now:.2f} s (median of {res['repeats']}, interleaved; {res['median_s']['against']:.2f} s for "
             f"{against[stem]})", "at most 5 s", "**met**" if now <= 5 else "**not met**", source(r, stem)]]


def claims(r: dict) -> str:
    """The claims table: metric, value ± spread, target, verdict, date and result file."""
    rows = []
    real = r[REAL]["results"]
    bar = {"WT": 0.85, "TC": 0.70, "ET": 0.60}  # docs/performance-targets.md, "Real scans"
    zero_tc = sum(1 for c in real["cases"] if c["dice"]["TC"] == 0)
    met = all(real["mean"]["dice"][t] >= v for t, v in bar.items()) and zero_tc == 0
    rows.append(["the built-in model, trained without patient data, segments real scans",
                 f"{len(real['cases'])} real BraTS 2018 cases: mean Dice " + ", ".join(
                     f"{t} {real['mean']['dice'][t]:.3f}" for t in bar) + f"; cases with TC 0: {zero_tc}",
                 ", ".join(f"{t} >= {v:.2f}" for t, v in bar.items()) + ", no case with TC 0",
                 "**met**" if met else "**not met**", source(r, "builtin-real-brats18")])
    rows += _missing_claims(r)
    rows += _finetune_claims(r)
    rows += methods_claims(r)
    rows += _segment_real_claims(r)
    s12, b5, bl = "study-shapes-1200", "study-brats-500", "study-brats-every-level-300"
    ciml_s, ef_s, maml_s = (_method(r, s12, m)["dice"] for m in ("ciml", "early-fusion", "maml"))
    po_s = _method(r, s12, "primary-only")["dice"]
    ciml_b, ef_b, maml_b, po_b = (_method(r, b5, m)["dice"] for m in ("ciml", "early-fusion", "maml", "primary-only"))
    every = _method(r, bl, "ciml")
    rows.append(["CIML beats early fusion, same budget",
                 f"`shapes` 1200 steps: {pm(ciml_s)} against {pm(ef_s)}; `brats` 500 steps, two deepest gates: "
                 f"{pm(ciml_b)} against {pm(ef_b)}",
                 "higher, beyond the spread",
                 f"**not shown** on `shapes` ({spread(ciml_s, ef_s)}); **not met** on `brats` (early fusion "
                 f"higher, {spread(ciml_b, ef_b)}); gates at every level not compared at an equal budget",
                 f"{source(r, s12)}; {source(r, b5)}"])
    rows.append(["CIML beats MAML, same budget",
                 f"`shapes` 1200 steps: {pm(ciml_s)} against {pm(maml_s)}; `brats` 500 steps, two deepest gates: "
                 f"{pm(ciml_b)} against {pm(maml_b)} (MAML {_method(r, b5, 'maml')['seeds']} seeds)",
                 "higher, beyond the spread",
                 f"**not shown**: {spread(ciml_s, maml_s)} on `shapes`, {spread(ciml_b, maml_b)} on `brats`",
                 f"{source(r, s12)}; {source(r, b5)}"])
    rows.append(["CIML uses the complementary modality",
                 f"`shapes` 1200 steps: {pm(ciml_s)} against primary-only {pm(po_s)}; `brats`, every level, 300 "
                 f"steps: WT {every['WT']['mean']:.3f} -> {every['wt_without_t2']:.3f} without T2, ET "
                 f"{every['ET']['mean']:.3f} -> {every['et_without_t1']:.3f} without T1",
                 "above primary-only; withholding an auxiliary costs what it shows",
                 f"**met** on `shapes` ({spread(ciml_s, po_s)}); on `brats` withholding T1 or T2 costs what the "
                 f"phantom says; against primary-only ({pm(po_b)}, 500 steps) not at an equal budget",
                 f"{source(r, s12)}; {source(r, bl)}"])
    gates = r[s12]["results"]["gates"]
    rows.append(["the bottleneck filters a redundant modality's message",
                 f"`shapes` 1200 steps, two deepest gates: echo message {pm(gates['ciml']['echo']['message'])} of the "
                 f"primary's rms, {pm(gates['no-bottleneck']['echo']['message'])} without the bottleneck",
                 "smaller with it",
                 f"**met** below full resolution ({spread(gates['ciml']['echo']['message'], gates['no-bottleneck']['echo']['message'])}); "
                 "with gates at every level the echo's full-resolution gate is the more open one",
                 f"{source(r, s12)}; {source(r, 'study-shapes-every-level-1200')}"])
    ab = r["study-ablations-300"]["results"]
    rows.append(["the attention and the task decomposition matter",
                 f"`brats` (the phantom of 2026-11-22), 300 steps: {pm(ab['brats']['ciml'])}, without attention "
                 f"{pm(ab['brats']['no-attention'])}, one decoder {pm(ab['brats']['no-decomposition'])}",
                 "higher with them, beyond the spread",
                 f"**not shown** ({spread(ab['brats']['ciml'], ab['brats']['no-attention'])}, "
                 f"{spread(ab['brats']['ciml'], ab['brats']['no-decomposition'])}); on a replaced phantom",
                 source(r, "study-ablations-300")])
    miss = r["study-shapes-missing-300"]["results"]["methods"]
    rows.append(["PASSION loses less than plain modality dropout with a modality missing",
                 f"`shapes` 300 steps, cue missing in 70 % of training: without the cue, CIML "
                 f"{pm(miss['ciml-passion']['without']['cue'])} against {pm(miss['ciml-dropout']['without']['cue'])}, "
                 f"MAML {pm(miss['maml-passion']['without']['cue'])} against {pm(miss['maml-dropout']['without']['cue'])}",
                 "higher than dropout, beyond the spread",
                 f"**not shown**: {spread(miss['ciml-passion']['without']['cue'], miss['ciml-dropout']['without']['cue'])} "
                 "for both networks; dropout is what keeps the primary-only level",
                 source(r, "study-shapes-missing-300")])
    rows.append(["CIML survives losing a redundant modality",
                 f"`shapes` 1200 steps without the echo: CIML {pm(_method(r, s12, 'ciml')['without']['echo'])}, "
                 f"early fusion {pm(_method(r, s12, 'early-fusion')['without']['echo'])}, "
                 f"MAML {pm(_method(r, s12, 'maml')['without']['echo'])}",
                 "no loss", "**met**", source(r, s12)])
    rows.append(["CIML keeps the primary-only level without the complementary modality",
                 f"`shapes` 1200 steps without the cue: {pm(_method(r, s12, 'ciml')['without']['cue'])} against "
                 f"primary-only {pm(po_s)}; trained with it missing (300 steps): "
                 f"{pm(miss['ciml-dropout']['without']['cue'])}",
                 "at least primary-only",
                 "**not met** unless trained with the modality missing (`training.missing_rates`)",
                 f"{source(r, s12)}; {source(r, 'study-shapes-missing-300')}"])
    rows.append(["DTC helps with few labels",
                 f"`shapes` 300 steps, 6 labelled cases: {pm(ab['shapes']['dtc-few'])} with DTC, "
                 f"{pm(ab['shapes']['supervised-few'])} without",
                 "higher, beyond the spread",
                 f"**not shown** ({spread(ab['shapes']['dtc-few'], ab['shapes']['supervised-few'])}; 6 labels "
                 "already saturate the `shapes` phantom)", source(r, "study-ablations-300")])
    rows += speed_claims(r)
    return table(["claim", "measured", "target", "verdict", "result file, date"], rows)


def speed_claims(r: dict) -> list[list[str]]:
    """The speed, memory and relations rows, from the newest result of each benchmark."""
    rows = []
    stem = newest(r, "benchmark.pipelines")
    if stem:
        res = r[stem]["results"]
        for key, what in (("ciml_brats/segresnet", "`ciml segment` with a `brats`-preset bundle against MONAI's BraTS "
                                                   "SegResNet pipeline, whole processes"),
                          ("ciml_builtin/segresnet", "the built-in model against the same pipeline")):
            q = _today(key, res["ratios"][key])
            rows.append([what, f"{q['value']:.2f}x", f"at most {q['target']:.1f}x",
                         "**met**" if q["met"] else "**not met**", source(r, stem)])
        peak = res["processes"]["ciml_brats"]["rss_peak_bytes"]
        rows.append(["peak memory of `ciml segment`, `brats` preset, CPU", _gb(peak), MEMORY_BOUND,
                     "**met**" if peak < MEMORY_TARGET_BYTES else "**not met**", source(r, stem)])
    for model, label in ((None, "`brats` preset"), ("built-in", "built-in model")):
        stem = newest(r, "benchmark.speed", model)
        if stem is None:
            continue
        q = r[stem]["results"]["ratios"]
        peaks = r[stem]["results"]["targets"]
        worst = max((v for k, v in peaks.items() if k.endswith("peak memory")), key=lambda v: v["value"], default=None)
        if worst is not None:
            rows.append([f"peak memory with every effect or map, CPU ({label})", _gb(worst["value"]), MEMORY_BOUND,
                         "**met**" if worst["value"] < MEMORY_TARGET_BYTES else "**not met**", source(r, stem)])
        for key, what in (("ciml_effects/ciml", "every effect"), ("ciml_cams/ciml", "every Grad-CAM map"),
                          ("ciml/early_fusion", "CIML segmentation against early fusion of equal size")):
            if key in q and q[key]["value"] is not None:
                claim = what if key == "ciml/early_fusion" else f"segmentation with {what} against segmentation alone"
                rows.append([f"{claim} ({label})", f"{q[key]['value']:.2f}x", f"at most {q[key]['target']}x",
                             "**met**" if q[key]["met"] else "**not met**", source(r, stem)])
    stem = newest(r, "benchmark.relations")
    if stem:
        rho = r[stem]["results"]["spearman"]
        rows.append(["the relations table ranks the modalities as real runs without them do",
                     "Spearman " + ", ".join(f"{t} {v:.2f}" for t, v in rho.items()),
                     "agree (positive rank correlation)",
                     "**met**" if min(rho.values()) > 0 else "**not met**", source(r, stem)])
    cap = r["speed-captum-2026-11-23"]["results"]
    rows.append(["our maps against a Captum `LayerGradCam` loop",
                 f"{cap['ratios']['captum_loop/ciml_cams']:.1f}x faster, peak {cap['configs']['ciml_cams']['rss_peak_gb']:.2f} "
                 f"GB against {cap['configs']['captum_loop']['rss_peak_gb']:.2f} GB; {cap['model']}",
                 "reported", "reported; measured under an older default (gates at the two deepest levels)",
                 source(r, "speed-captum-2026-11-23")])
    return rows


def accuracy(r: dict) -> str:
    """The phantom studies: every method at one budget per table."""
    s12, b5, bl = "study-shapes-1200", "study-brats-500", "study-brats-every-level-300"
    rows = []
    for stem, task in ((s12, "`shapes`"), ("study-shapes-every-level-1200", "`shapes`")):
        res = r[stem]["results"]
        for name, m in res["methods"].items():
            rows.append([task, f"{res['steps']}", name + ("" if name != "ciml" else f" ({res['gate_levels']})"),
                         str(m["seeds"]), pm(m["dice"]), "–", "–", "–", source(r, stem)])
    for stem in (b5, bl):
        res = r[stem]["results"]
        for name, m in res["methods"].items():
            rows.append(["`brats`", f"{res['steps']}", name + ("" if name != "ciml" else f" ({res['gate_levels']})"),
                         str(m["seeds"]), pm(m["dice"]), pm(m["WT"]), pm(m["TC"]), pm(m["ET"]), source(r, stem)])
    return table(["task", "steps", "method", "seeds", "mean Dice", "WT", "TC", "ET", "result file, date"], rows)


def missing(r: dict) -> str:
    """Held-out mean Dice with every modality and without each one."""
    rows = []
    for stem in ("study-shapes-1200", "study-shapes-missing-300"):
        res = r[stem]["results"]
        for name, m in res["methods"].items():
            if "without" in m:
                rows.append(["`shapes`", str(res["steps"]), name, pm(m["dice"]), pm(m["without"]["cue"]),
                             pm(m["without"]["echo"]), source(r, stem)])
    shapes = table(["task", "steps", "method", "all modalities", "without cue", "without echo", "result file, date"], rows)
    rows = []
    for stem in ("study-brats-500", "study-brats-every-level-300"):
        res = r[stem]["results"]
        for name, m in res["methods"].items():
            if "without" in m:
                label = name + ("" if name != "ciml" else f" ({res['gate_levels']})")
                rows.append([str(res["steps"]), label, pm(m["dice"]), pm(m["without"]["t1"]), pm(m["without"]["t2"]),
                             pm(m["without"]["flair"]), source(r, stem)])
    brats = table(["`brats` steps", "method", "all modalities", "without t1", "without t2", "without flair",
                   "result file, date"], rows)
    return shapes + "\n" + brats


BRATS_PRIMARIES = {"WT": "flair", "TC": "t1ce", "ET": "t1ce"}  # the brats card's sub-tasks


def information(r: dict) -> str:
    """What the built-in model takes from the auxiliary that shows each hidden structure (means
    over the cases that have the structure)."""
    stem = newest(r, "benchmark.information", "built-in")
    if stem is None:
        return "No measurement under the current default.\n"
    res = r[stem]["results"]
    rows = [[f"{s['structure']} ({s['target']}, shown by {'/'.join(s['tellers'])})", str(s["cases"]),
             f"{s['right']:.3f}", f"{s['right_without']:.3f}", f"{s['changed']:.3f}",
             f"{s['other']:.3f} ({s['other_modality']})"] for s in structure_summary(res, BRATS_PRIMARIES)]
    return (table(["structure (target, shown by)", "cases", "right", "right without it", "changed without it",
                   "most changed without another auxiliary"], rows)
            + f"\n{res['cases']} unseen phantom cases (seed {res['seed']}), the built-in model; "
              f"`{r[stem]['command']}`; {source(r, stem)}.\n")


def _finetune_headline(r: dict) -> list[str]:
    if INIT not in r:
        return []
    res = r[INIT]["results"]
    mean = res["mean_last"]["dice"]
    return [f"- **Fine-tuned on your own cases** ({res['folds'][0]['train_cases']} real cases, {res['minutes']:g} minutes "
            f"on a 2-core CPU, {len(res['folds'])} folds, from the built-in model before its last stage): mean Dice on "
            f"the held-out real cases WT {mean['WT']:.3f}, "
            f"TC {mean['TC']:.3f}, ET {mean['ET']:.3f} (target " + " / ".join(f"{v:.2f}" for v in TARGET.values())
            + f": {'met' if target_met(res) else 'not met'}). "
            "[Fine-tuning](docs/BENCHMARKS.md#fine-tuning-on-your-own-real-cases)"]


def headline(r: dict) -> str:
    """The README's headline numbers: real scans first, then the phantoms, then speed."""
    real_mean = r["builtin-real-brats18"]["results"]["mean"]["dice"]
    n = len(r["builtin-real-brats18"]["results"]["cases"])
    s12, b5 = "study-shapes-1200", "study-brats-500"
    lines = [f"- **Real scans** ({n} real BraTS 2018 cases, {r['builtin-real-brats18']['date'][:10]}): the built-in model, "
             f"trained on synthetic data only, scores mean Dice WT {real_mean['WT']:.3f}, TC {real_mean['TC']:.3f}, "
             f"ET {real_mean['ET']:.3f}; models trained on real scans reach about 0.90 / 0.85 / 0.80. "
             "[Per case](docs/BENCHMARKS.md#real-scans)",
             *_finetune_headline(r),
             *methods_headline(r),
             f"- **Phantoms**: on `shapes` (1200 steps, 3 seeds) CIML {pm(_method(r, s12, 'ciml')['dice'])}, early fusion "
             f"{pm(_method(r, s12, 'early-fusion')['dice'])}, MAML {pm(_method(r, s12, 'maml')['dice'])} "
             f"({spread(_method(r, s12, 'ciml')['dice'], _method(r, s12, 'early-fusion')['dice'])}); on `brats` "
             f"(500 steps, gates at the two deepest levels) early fusion {pm(_method(r, b5, 'early-fusion')['dice'])} "
             f"leads CIML {pm(_method(r, b5, 'ciml')['dice'])}. [Accuracy](docs/BENCHMARKS.md#accuracy-on-the-phantoms)"]
    stem = newest(r, "benchmark.pipelines")
    if stem:
        q = r[stem]["results"]["ratios"]
        lines.append(f"- **Speed** (whole processes, 2-core CPU): `ciml segment` with a `brats`-preset bundle "
                     f"{q['ciml_brats/segresnet']['value']:.2f}x MONAI's BraTS SegResNet pipeline, the built-in model "
                     f"{q['ciml_builtin/segresnet']['value']:.2f}x. [Speed](docs/BENCHMARKS.md#speed-and-memory)")
    return "\n".join(lines) + "\n"


def newest(r: dict, kind: str, model: str | None = "any") -> str | None:
    """The stem of the newest measured result file of a kind (by date), or None; ``model``: only
    runs of that bundle (``None``: the preset's random weights)."""
    stems = sorted((res["date"], stem) for stem, res in r.items()
                   if res["kind"] == kind and "source" not in res
                   and (model == "any" or _model_name(res["results"].get("model")) == model))
    return stems[-1][1] if stems else None


def _model_name(model: str | None) -> str | None:
    """"built-in" for the built-in model's bundle, whatever the path it was run from."""
    if model is None:
        return None
    return "built-in" if Path(model).name == "brats-sample" else Path(model).name


def _gb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e9:.2f} GB"


def _verdict(ratio: dict) -> str:
    if ratio["target"] is None:
        return "reported"
    return f"{'**met**' if ratio['met'] else '**not met**'} (target {ratio['target']})"


def _today(key: str, ratio: dict) -> dict:
    """A pipelines ratio judged against today's bound, whatever the file says."""
    bound = PIPELINE_RATIOS[key][2] if key in PIPELINE_RATIOS else None
    return {**ratio, "target": bound, "met": None if bound is None else ratio["value"] <= bound}


def speed(r: dict) -> str:
    """Whole processes against MONAI's BraTS SegResNet pipeline, from the newest pipelines run."""
    stem = newest(r, "benchmark.pipelines")
    if stem is None:
        return "No measurement under the current default.\n"
    res = r[stem]["results"]
    rows = [[p["label"], f"{p['median_s']:.1f}", f"{p['min_s']:.1f}", f"{p['max_s']:.1f}", _gb(p["rss_peak_bytes"])]
            for p in res["processes"].values()]
    stages = {name: p["stages_median_s"] for name, p in res["processes"].items() if p.get("stages_median_s")}
    text = table(["process (read, segment, write)", "median s", "min s", "max s", "peak RSS"], rows)
    if stages:
        names = list(next(iter(stages.values())))
        text += "\n" + table(["stages (median s, from report.json)", *names],
                              [[n, *(f"{s[k]:.1f}" for k in names)] for n, s in stages.items()])
    text += "\n" + table(["ratio of median times", "value", "verdict"],
                          [[k, f"{v['value']:.2f}", _verdict(_today(k, v))] for k, v in res["ratios"].items()])
    return text + f"\n`{r[stem]['command']}`: {res['size']} case, {res['repeats']} interleaved repeats; {machine(r, stem)}; {source(r, stem)}.\n"


def effects(r: dict) -> str:
    """Segmentation, every effect and every Grad-CAM map, from the newest speed run of each model."""
    rows, notes = [], []
    for model, label in ((None, "`brats` preset (random weights)"), ("built-in", "built-in model")):
        stem = newest(r, "benchmark.speed", model)
        if stem is None:
            continue
        res = r[stem]["results"]
        c, q = res["configs"], res["ratios"]
        cell = lambda name: f"{c[name]['median_s']:.1f} s" if name in c else "–"
        peaks = " / ".join(_gb(c[n].get("rss_peak_bytes")) for n in ("ciml", "ciml_effects", "ciml_cams") if n in c)
        rows.append([label, cell("ciml"), cell("ciml_effects"), cell("ciml_cams"),
                     f"{q['ciml_effects/ciml']['value']:.2f}" if "ciml_effects/ciml" in q else "–",
                     f"{q['ciml_cams/ciml']['value']:.2f}" if "ciml_cams/ciml" in q else "–", peaks, source(r, stem)])
        notes.append(f"{label}: `{r[stem]['command']}`, {machine(r, stem)}")
    if not rows:
        return "No measurement under the current default.\n"
    return (table(["model", "(a) segmentation", "(e) + every effect", "(b) + every Grad-CAM map", "(e)/(a)",
                   "(b)/(a)", "peak RSS (a) / (e) / (b)", "result file, date"], rows)
            + "\n" + "; ".join(notes) + ".\n")


def relations(r: dict) -> str:
    """The relations table's shares against real runs without each modality."""
    stem = newest(r, "benchmark.relations")
    if stem is None:
        return "No measurement under the current default.\n"
    res = r[stem]["results"]
    summary = relations_summary(res)
    modalities = list(next(iter(summary.values())))
    rows = [[t, *(f"{100 * share:.1f} % / {lost:+.3f}" for share, lost in by.values()), f"{res['spearman'][t]:.2f}"]
            for t, by in summary.items()]
    return (table(["target", *(f"{m}: share / Dice lost" for m in modalities), "Spearman"], rows)
            + f"\n{res['cases']} unseen cases (seed {res['seed']}), {_model_name(res['model'])} model; "
              f"`{r[stem]['command']}`; {source(r, stem)}.\n")


BLOCKS: dict[str, Callable[[dict], str]] = {
    "claims": claims, "accuracy": accuracy, "missing": missing, "information": information, "headline": headline,
    "speed": speed, "effects": effects, "relations": relations, "real": real, "generator": generator,
    "missing-real": missing_real, "finetune-real": finetune_real,
    "methods-real": methods_real,
}


