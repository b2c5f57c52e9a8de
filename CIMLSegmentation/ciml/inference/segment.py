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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml import __version__
from ciml.bundle.weights import Bundle, load_bundle, read_card
from ciml.choices import OUTPUT_FORMATS
from ciml.config import ModelCard
from ciml.data import Case, load_case, write_image
from ciml.errors import CIMLError
from ciml.inference.device import resolve_device
from ciml.inference.sliding_window import predict_logits, predict_with_cams
from ciml.progress import Progress

# Stages and the share of the progress bar each takes.
STAGES = {"loading model": 0.05, "reading images": 0.10, "segmenting": 0.75, "writing": 0.10}


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment and how (a description only: the run's warnings are in :class:`Inference`).

    Args:
        model: the bundle folder.
        inputs: modality name -> image path (file or DICOM folder), one per card modality.
        out: the output folder (created if needed).
        device: ``auto``, ``cpu`` or ``cuda``.
        cams: compute the per-modality heat maps.
        cam_per_target: also write one heat map per (target, modality).
        fmt: one of :data:`~ciml.choices.OUTPUT_FORMATS`.
    """

    model: str
    inputs: dict[str, str]
    out: str
    device: str = "auto"
    cams: bool = True
    cam_per_target: bool = False
    fmt: str = "nii.gz"


@dataclass
class Inference:
    """What the segmenting stage produced, on the case's working grid.

    Attributes:
        logits: (T, *S) float32 logits on the CPU.
        maps: (T, M, *S) raw (un-normalised) heat maps on the CPU, or ``None`` when none were
            computed.
        device: where the windows ran (the CPU after a CUDA out-of-memory fallback).
        warnings: sentences for report.json about the run (after the case's own).
    """

    logits: torch.Tensor
    maps: torch.Tensor | None
    device: torch.device
    warnings: list[str] = field(default_factory=list)


def check_inputs(card: ModelCard, inputs: dict[str, str]) -> None:
    """Refuse missing or extra modality names and missing files, before any work starts."""
    expected = card.modality_names
    missing = [m for m in expected if m not in inputs]
    extra = [m for m in inputs if m not in expected]
    if extra:
        raise CIMLError(f"--input {extra[0]}: the model '{card.name}' has no modality of that name "
                        f"(it expects {', '.join(expected)})")
    if missing:
        raise CIMLError(f"missing --input for {', '.join(missing)} (the model '{card.name}' expects "
                        f"{', '.join(f'{m}=PATH' for m in expected)})")
    for name, path in inputs.items():
        if not Path(path).exists():
            raise CIMLError(f"--input {name}={path}: no such file or folder")


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
    progress = progress or Progress("none")
    stages = _Stages(progress)
    card = read_card(request.model)
    check_inputs(card, request.inputs)
    out = Path(request.out)
    if out.exists() and not out.is_dir():
        raise CIMLError(f"--out {out}: exists and is not a folder")

    stages.enter("loading model")
    bundle = load_bundle(request.model)
    stages.enter("reading images")
    case = load_case(card, request.inputs, case_id=out.name)
    stages.enter("segmenting")
    inference = _run(bundle, case.image, request, stages)
    stages.enter("writing")
    return _write(request, bundle, case, inference, stages)


def _run(bundle: Bundle, image: np.ndarray, request: SegmentRequest, stages: _Stages) -> Inference:
    """Inference on the asked device; CUDA out of memory falls back to the CPU unless forced.

    Args:
        bundle: the loaded bundle.
        image: (M, *S) the case's normalised modalities on its working grid.
        request: the asked device and whether to compute heat maps.
        stages: progress, inside the ``segmenting`` stage.
    """
    device = resolve_device(request.device)
    with_cams = request.cams and bundle.arch == "ciml"
    warnings: list[str] = []
    if request.cams and not with_cams:
        warnings.append(f"heat maps need the ciml architecture; this model is {bundle.arch}: none computed")
    try:
        return _infer(bundle, image, device, with_cams, stages, warnings)
    except torch.OutOfMemoryError:
        if request.device == "cuda":
            raise CIMLError("CUDA out of memory (--device cuda was forced); rerun with --device cpu") from None
        torch.cuda.empty_cache()
        warnings.append("CUDA ran out of memory; segmented on the CPU instead")
        return _infer(bundle, image, torch.device("cpu"), with_cams, stages, warnings)


def _infer(bundle: Bundle, image: np.ndarray, device: torch.device, with_cams: bool, stages: _Stages,
           warnings: list[str]) -> Inference:
    """One attempt at :func:`_run`'s job on ``device``; ``warnings`` so far go into the result."""
    network = bundle.network.to(device).eval()
    tensor = torch.from_numpy(np.ascontiguousarray(image))

    def on_window(done: int, total: int) -> None:
        stages.within(done / total)

    if with_cams:
        logits, maps = predict_with_cams(network, tensor, bundle.card, device, on_window)
    else:
        logits, maps = predict_logits(network, tensor, bundle.card, device, on_window), None
    return Inference(logits=logits, maps=maps, device=device, warnings=warnings)


def normalised_maps(cams: torch.Tensor) -> torch.Tensor:
    """(T, M, *S) raw maps -> 0..1, each target's maps divided by that target's largest value.

    One scale per target, shared by its modalities, keeps a modality that contributed little
    near zero instead of stretching its noise to full range.
    """
    peak = cams.flatten(1).amax(dim=1).clamp_min(1e-12)
    return cams / peak.reshape(-1, *([1] * (cams.dim() - 1)))


def contributions(cams: torch.Tensor, regions: torch.Tensor, card: ModelCard) -> dict[str, dict[str, float]]:
    """Each modality's share of the Grad-CAM mass inside each predicted target region.

    share(t, m) = sum over voxels v in region t of CAM(t, m, v) / sum over modalities of the same.

    Args:
        cams: (T, M, *S) raw maps; regions: (T, *S) binary predictions, both on the working grid.
    """
    out = {}
    for i, t in enumerate(card.target_names):
        mass = (cams[i] * regions[i].unsqueeze(0)).flatten(1).sum(dim=1)
        total = float(mass.sum())
        out[t] = {m: round(float(mass[j]) / total, 4) if total > 0 else 0.0
                  for j, m in enumerate(card.modality_names)}
    return out


def _write(request: SegmentRequest, bundle: Bundle, case: Case, inference: Inference,
           stages: _Stages) -> dict[str, Any]:
    """Write the label map, the heat maps and report.json into ``request.out``, all or nothing."""
    card = bundle.card
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    probabilities = torch.sigmoid(inference.logits)
    label = case.label_map(probabilities.numpy(), card)
    files: dict[str, np.ndarray] = {"segmentation": label}
    if inference.maps is not None:
        scaled = normalised_maps(inference.maps)
        for j, m in enumerate(card.modality_names):
            files[f"cam_{m}"] = scaled[:, j].amax(dim=0).numpy()
            if request.cam_per_target:
                files.update({f"cam_{t}_{m}": scaled[i, j].numpy() for i, t in enumerate(card.target_names)})
    tmp = Path(tempfile.mkdtemp(prefix=".ciml-segment-", dir=out))
    try:
        names = {}
        for k, (name, values) in enumerate(files.items()):
            # the label map is already on the reference grid; heat maps are on the working grid
            data = values if name == "segmentation" else case.to_reference(values.astype(np.float32))
            path = tmp / f"{name}.{request.fmt}"
            write_image(data, case.reference, path)
            names[name] = path.name
            stages.within((k + 1) / (len(files) + 1))
        stages.leave()
        report = _report(request, bundle, case, inference, label, probabilities, stages.timings, names)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for path in tmp.iterdir():  # all written: now replace what an earlier run left
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _report(request: SegmentRequest, bundle: Bundle, case: Case, inference: Inference, label: np.ndarray,
            probabilities: torch.Tensor, timings: dict[str, float], outputs: dict[str, str]) -> dict[str, Any]:
    """The contents of report.json (docs/segment.md; the Slicer module reads it).

    Args:
        request: what was asked (its inputs are reported).
        bundle: the bundle that segmented (path, name, architecture, weights hash).
        case: the case (its reference spacing gives volumes; its warnings come first).
        inference: the segmenting stage's result (device, maps, warnings).
        label: the written label map, on the reference grid.
        probabilities: (T, *S) sigmoid of the logits on the working grid (the contributions'
            regions).
        timings: seconds per stage.
        outputs: output name -> file name written.
    """
    card = bundle.card
    voxel_ml = float(np.prod(case.reference.spacing)) / 1000.0
    cams = inference.maps
    shares = contributions(cams, probabilities > card.inference.threshold, card) if cams is not None else {}
    targets = {}
    for t in card.targets:
        voxels = int(np.isin(label, t.includes).sum())  # the written label map, as a reader sees it
        targets[t.name] = {"label": t.label, "voxels": voxels, "volume_ml": round(voxels * voxel_ml, 3),
                           "contributions": shares.get(t.name, {})}
    return {
        "ciml_version": __version__,
        "model": {"path": str(bundle.path), "name": card.name, "arch": bundle.arch,
                  "sha256": bundle.metadata["weights"]["sha256"]},
        "inputs": dict(request.inputs), "reference": card.reference, "device": str(inference.device),
        "heat_maps": cams is not None, "outputs": outputs, "timings_s": timings, "targets": targets,
        "warnings": list(case.warnings) + inference.warnings,
    }
