"""Segmenting one case with a bundle: the job behind `ciml segment` and the Slicer module.

Outputs go to a temporary folder inside the output folder and are moved into place only when
all of them were written, so an earlier result is never half-overwritten. The outputs and
report.json are described in docs/segment.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml import __version__
from ciml.bundle import read_card
from ciml.bundle.weights import Bundle, load_bundle
from ciml.choices import MAP_KINDS, OUTPUT_FORMATS
from ciml.config import ModelCard
from ciml.data import Case, load_case, write_image
from ciml.data.foreground import body_mask
from ciml.errors import CIMLError
from ciml.inference.device import resolve_device
from ciml.inference.effects import predict_withheld
from ciml.inference.gradcam import modality_shares
from ciml.inference.relations import Relations, effect_maps, relations, strongest_effect
from ciml.inference.runtime import RuntimeChoice, choose_runtime
from ciml.inference.sliding_window import predict_logits, predict_with_cams
from ciml.nn import CIMLNet
from ciml.nn.gate_diagnostics import centred_window, gate_diagnostics
from ciml.progress import Progress

# Stages and the share of the progress bar each takes.
STAGES = {"loading model": 0.05, "reading images": 0.10, "segmenting": 0.75, "writing": 0.10}


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment and how (a description only: the run's warnings are in :class:`Inference`).

    Args:
        model: the bundle folder.
        inputs: modality name -> image path (file or DICOM folder); any subset of the card's
            modalities with at least one per sub-task (the others are absent).
        out: the output folder (created if needed).
        device: ``auto``, ``cpu`` or ``cuda``.
        maps: one of :data:`~ciml.choices.MAP_KINDS`: ``effects`` (what withholding each
            modality changes, and the relations from it), ``gradcam``, ``all`` or ``none``.
        per_target: also write one map per (target, modality).
        fmt: one of :data:`~ciml.choices.OUTPUT_FORMATS`.
    """

    model: str
    inputs: dict[str, str]
    out: str
    device: str = "auto"
    maps: str = "effects"
    per_target: bool = False
    fmt: str = "nii.gz"

    @property
    def effects(self) -> bool:
        return self.maps in ("effects", "all")

    @property
    def gradcam(self) -> bool:
        return self.maps in ("gradcam", "all")


# The report's gate diagnostics are per-voxel averages: a window of 64^3 measures them as well as
# the brats preset's 128^3 window, which cost as much as segmenting the case (12 s of 26 s on 2
# CPU cores; docs/speed.md). The built-in model's window is 64^3 already.
GATE_WINDOW = 64


@dataclass
class Inference:
    """What the segmenting stage produced, on the case's working grid.

    Attributes:
        logits: (T, *S) float32 logits on the CPU.
        maps: (T, M, *S) signed, raw (un-normalised) Grad-CAM maps on the CPU, or ``None``.
        withheld: (M, T, *S) logits with each modality withheld, or ``None``.
        gates: each gate's diagnostics on a window at the case's centre (:func:`gate_report`),
            filled in while the outputs are written.
        device: where the windows ran (the CPU after a CUDA out-of-memory fallback).
        runtime: what ran the network for the logits and effects (Grad-CAM always runs in
            PyTorch), with its note when ONNX Runtime was wanted but not used.
        warnings: sentences for report.json about the run (after the case's own).
    """

    logits: torch.Tensor
    maps: torch.Tensor | None
    device: torch.device
    runtime: RuntimeChoice | None = None
    withheld: torch.Tensor | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_inputs(card: ModelCard, inputs: dict[str, str]) -> None:
    """Refuse unknown modality names, missing files, and a sub-task left with no input at all,
    before any work starts."""
    expected = card.modality_names
    extra = [m for m in inputs if m not in expected]
    if extra:
        raise CIMLError(f"--input {extra[0]}: the model '{card.name}' has no modality of that name "
                        f"(it expects {', '.join(expected)})")
    for s in card.subtasks:
        if not any(m in inputs for m in (s.primary, *s.auxiliaries)):
            raise CIMLError(f"no input for sub-task {s.name} ({', '.join(s.targets)}): give at least one of "
                            f"{', '.join((s.primary, *s.auxiliaries))} (the model '{card.name}' expects "
                            f"{', '.join(f'{m}=PATH' for m in expected)})")
    for name, path in inputs.items():
        if not Path(path).exists():
            raise CIMLError(f"--input {name}={path}: no such file or folder")


def absent_warnings(card: ModelCard, absent: list[str]) -> list[str]:
    """The warnings report.json gives a run without some modalities: targets that cannot be seen
    without one (a target's ``needs``), and modalities the model was not trained to miss."""
    warnings = [f"{t.name} needs {', '.join(m for m in t.needs if m in absent)}: without it {t.name} cannot be "
                f"seen, and its region is the model's guess" for t in card.targets if set(t.needs) & set(absent)]
    trained = [m for m in absent if card.training.missing_rates.get(m, 0.0) > 0]
    untested = [m for m in absent if m not in trained]
    if untested:
        warnings.append(f"this model was not trained with {', '.join(untested)} missing (its card's "
                        "training.missing_rates): its accuracy without them is untested")
    return warnings


class _Stages:
    """Maps a stage's own fraction onto the whole job's progress."""

    def __init__(self, progress: Progress):
        self.progress, self.done, self.timings = progress, 0.0, {}
        self._stage, self._started = None, 0.0

    def enter(self, stage: str) -> None:
        self.leave()
        self._stage, self._started = stage, time.monotonic()
        self.progress.update(stage, self.done)

    def within(self, fraction: float) -> None:
        self.progress.update(self._stage, self.done + STAGES[self._stage] * fraction)

    def leave(self) -> None:
        if self._stage is not None:
            self.done += STAGES[self._stage]
            self.timings[self._stage] = round(time.monotonic() - self._started, 3)
            self._stage = None


def segment(request: SegmentRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole job; returns the report (also written as report.json)."""

    if request.fmt not in OUTPUT_FORMATS:
        raise CIMLError(f"--format {request.fmt}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if request.maps not in MAP_KINDS:
        raise CIMLError(f"--maps {request.maps}: choose one of {', '.join(MAP_KINDS)}")
    progress = progress or Progress("none")
    stages = _Stages(progress)
    card = read_card(request.model)
    check_inputs(card, request.inputs)
    out = Path(request.out)
    if out.exists() and not out.is_dir():
        raise CIMLError(f"--out {out}: exists and is not a folder")

    stages.enter("loading model")
    bundle = load_bundle(request.model)
    runtime = choose_runtime(bundle, resolve_device(request.device))  # exported once, then cached
    stages.enter("reading images")
    absent = [m for m in card.modality_names if m not in request.inputs]
    # Outputs go on the reference's grid; without the reference, on the first given modality's.
    grid_card = card if card.reference not in absent else replace(
        card, reference=next(m for m in card.modality_names if m not in absent))
    case = load_case(grid_card, request.inputs, case_id=out.name, allow_missing=True)
    case.warnings += absent_warnings(card, absent)
    stages.enter("segmenting")
    inference = _run(bundle, runtime, case, request, stages)
    stages.enter("writing")
    return _write(request, bundle, case, inference, stages)


def _run(bundle: Bundle, runtime: RuntimeChoice, case: Case, request: SegmentRequest, stages: _Stages) -> Inference:
    """Inference on the asked device; CUDA out of memory falls back to the CPU unless forced.

    Args:
        bundle: the loaded bundle.
        runtime: what runs the network on the asked device (:func:`~ciml.inference.runtime.choose_runtime`).
        case: the loaded case (its normalised modalities on the working grid, which are given).
        request: the asked device and maps.
        stages: progress, inside the ``segmenting`` stage.
    """
    device = resolve_device(request.device)
    maps = request.maps if bundle.arch == "ciml" else "none"
    warnings: list[str] = []
    if request.maps != maps:
        warnings.append(f"modality effects and heat maps need the ciml architecture; this model is "
                        f"{bundle.arch}: none computed")
    try:
        return _infer(bundle, runtime, case, device, maps, stages, warnings)
    except torch.OutOfMemoryError:
        if request.device == "cuda":
            raise CIMLError("CUDA out of memory (--device cuda was forced); rerun with --device cpu") from None
        torch.cuda.empty_cache()
        warnings.append("CUDA ran out of memory; segmented on the CPU instead")
        cpu = torch.device("cpu")
        return _infer(bundle, choose_runtime(bundle, cpu), case, cpu, maps, stages, warnings)


def _infer(bundle: Bundle, runtime: RuntimeChoice, case: Case, device: torch.device, maps: str,
           stages: _Stages, warnings: list[str]) -> Inference:
    """One attempt at :func:`_run`'s job on ``device``; ``warnings`` so far go into the result."""
    network = bundle.network.to(device).eval()
    fast = runtime.network if runtime.name != "pytorch" else network  # Grad-CAM needs PyTorch's autograd
    tensor = torch.from_numpy(np.ascontiguousarray(case.image))
    present = None if all(case.present) else torch.tensor(case.present, dtype=torch.float32)
    passes = 2 if maps == "all" else 1

    def progress(first: int):
        return lambda done, total: stages.within((first + done / total) / passes)

    withheld = cams = None
    if maps in ("effects", "all"):
        logits, withheld = predict_withheld(fast, tensor, bundle.card, device, progress(0), present)
    if maps in ("gradcam", "all"):
        logits, cams = predict_with_cams(network, tensor, bundle.card, device, progress(passes - 1), present)
    if maps == "none":
        logits = predict_logits(fast, tensor, bundle.card, device, progress(0), present)
    return Inference(logits=logits, maps=cams, withheld=withheld, device=device, runtime=runtime,
                     warnings=warnings)


def gate_report(network: torch.nn.Module, case: Case, card: ModelCard, device: torch.device) -> list[dict[str, Any]]:
    """Each gate's diagnostics on the window at the case's centre, at most :data:`GATE_WINDOW`
    voxels along an axis; none for other architectures."""
    if not isinstance(network, CIMLNet):
        return []
    multiple = card.network.window_multiple
    size = [max(multiple, min(r, GATE_WINDOW) // multiple * multiple) for r in card.inference.roi_size]
    window = torch.from_numpy(centred_window(case.image, size))[None].to(device)
    return [d.to_dict() for d in gate_diagnostics(network, window)]


def normalised_maps(cams: torch.Tensor) -> torch.Tensor:
    """(T, M, *S) raw maps -> 0..1, each target's maps divided by that target's largest value.

    One scale per target, shared by its modalities, keeps a modality that contributed little
    near zero instead of stretching its noise to full range.
    """
    peak = cams.flatten(1).amax(dim=1).clamp_min(1e-12)
    return cams / peak.reshape(-1, *([1] * (cams.dim() - 1)))


def _write(request: SegmentRequest, bundle: Bundle, case: Case, inference: Inference,
           stages: _Stages) -> dict[str, Any]:
    """Write the label map, the maps and report.json into ``request.out``, all or nothing."""
    card = bundle.card
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    probabilities = torch.sigmoid(inference.logits)
    label = case.label_map(probabilities.numpy(), card)
    tmp = Path(tempfile.mkdtemp(prefix=".ciml-segment-", dir=out))
    try:
        # the files are compressed and written in the background (two at a time: the 2-core CPU
        # measured 0.95x one writer) while the next map is computed; the gate diagnostics run
        # beside them, on CPU the writing stage leaves idle
        with ThreadPoolExecutor(max_workers=3) as writer:
            gates = writer.submit(gate_report, bundle.network, case, card, inference.device)
            names = {"segmentation": f"segmentation.{request.fmt}"}
            written = [writer.submit(write_image, label, case.reference, tmp / names["segmentation"])]
            body = body_mask(case.image[card.modality_index(case_reference(card, case))])
            withheld = None if inference.withheld is None else torch.sigmoid(inference.withheld)
            effects = None if withheld is None else effect_maps(card, case, probabilities, withheld, body)
            files = _map_files(request, card, inference, effects, body)
            for k, (name, values) in enumerate(files.items()):
                names[name] = f"{name}.{request.fmt}"  # maps are on the working grid
                written.append(writer.submit(write_image, case.map_to_reference(values), case.reference,
                                             tmp / names[name]))
                stages.within((k + 1) / (len(files) + 2))
            # while the last maps are written: the label maps without each modality
            found = None if effects is None else relations(card, case, effects, withheld, label)
            for done in written:
                done.result()  # a failed write fails the run, before anything is moved into place
            inference = replace(inference, gates=gates.result())
        stages.leave()
        report = _report(request, bundle, case, inference, found, label, body, stages.timings, names)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for path in tmp.iterdir():  # all written: now replace what an earlier run left
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def case_reference(card: ModelCard, case: Case) -> str:
    """The modality whose grid the outputs use: the card's reference, or the first given one."""
    if case.present[card.modality_index(card.reference)]:
        return card.reference
    return next(m for m, given in zip(card.modality_names, case.present) if given)


def _map_files(request: SegmentRequest, card: ModelCard, inference: Inference, effects: dict[str, np.ndarray] | None,
               body: np.ndarray) -> dict[str, np.ndarray]:
    """Output name -> map on the working grid: ``effect_<m>`` (signed, -1..1, from
    :func:`~ciml.inference.relations.effect_maps`) and ``cam_<m>`` (0..1), one per given
    modality, and per target when asked; zero outside the body."""
    files: dict[str, np.ndarray] = {}
    if effects is not None:
        for m, per_target in effects.items():
            files[f"effect_{m}"] = strongest_effect(per_target)
            if request.per_target:
                files.update({f"effect_{t}_{m}": per_target[i] for i, t in enumerate(card.target_names)})
    if inference.maps is not None:
        # shown clamped at 0 (where the modality pushed the target up); the shares use the signed maps
        scaled = normalised_maps(inference.maps.clamp_min(0)) * torch.from_numpy(body)
        for j, m in enumerate(card.modality_names):
            files[f"cam_{m}"] = scaled[:, j].amax(dim=0).numpy()
            if request.per_target:
                files.update({f"cam_{t}_{m}": scaled[i, j].numpy() for i, t in enumerate(card.target_names)})
    return files


def _report(request: SegmentRequest, bundle: Bundle, case: Case, inference: Inference, found: Relations | None,
            label: np.ndarray, body: np.ndarray, timings: dict[str, float],
            outputs: dict[str, str]) -> dict[str, Any]:
    """The contents of report.json (docs/segment.md; the Slicer module reads it).

    Args:
        request: what was asked (its inputs are reported).
        bundle: the bundle that segmented (path, name, architecture, weights hash).
        case: the case (its reference spacing gives volumes; its warnings come first).
        inference: the segmenting stage's result (device, maps, warnings).
        found: the modality relations (``None`` without ``--maps effects``).
        label: the written label map, on the reference grid.
        body: (*S) the body mask on the working grid (where Grad-CAM shares are summed when no
            effects were computed).
        timings: seconds per stage.
        outputs: output name -> file name written.
    """
    card = bundle.card
    voxel_ml = float(np.prod(case.reference.spacing)) / 1000.0
    if found is not None:
        shares = found.contributions
    elif inference.maps is not None:
        shares = modality_shares(inference.maps, torch.from_numpy(body), card)
    else:
        shares = {}
    targets = {}
    for t in card.targets:
        voxels = int(np.isin(label, t.includes).sum())  # the written label map, as a reader sees it
        targets[t.name] = {"label": t.label, "voxels": voxels, "volume_ml": round(voxels * voxel_ml, 3),
                           "contributions": shares.get(t.name, {})}
        if found is not None:
            targets[t.name]["effects"] = found.effects[t.name]
    return {
        "ciml_version": __version__,
        "model": {"path": str(bundle.path), "name": card.name, "arch": bundle.arch,
                  "sha256": bundle.metadata["weights"]["sha256"]},
        "inputs": dict(request.inputs), "absent": [m for m, given in zip(card.modality_names, case.present)
                                                   if not given],
        "reference": case_reference(card, case), "device": str(inference.device),
        "runtime": inference.runtime.to_dict() if inference.runtime is not None else {"name": "pytorch"},
        "maps": request.maps if inference.maps is not None or found is not None else "none",
        "contributions_from": "effects" if found is not None else "gradcam" if inference.maps is not None else None,
        "heat_maps": inference.maps is not None or found is not None, "outputs": outputs, "timings_s": timings,
        "targets": targets, "gates": inference.gates, "warnings": list(case.warnings) + inference.warnings,
    }
