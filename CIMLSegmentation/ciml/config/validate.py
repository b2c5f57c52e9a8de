"""Parsing plain data into a :class:`ModelCard`, with one clear message per problem.

Every field's type, range and choices are checked by the one walker of
:mod:`ciml.config.fields` from what the field declares in :mod:`ciml.config.card`; this module
adds the rules that relate several fields (names that must exist, sizes that must fit the
network). Every message names the field by its path in the card (``subtasks[1].primary``), so
that a user editing a JSON file can find it. Unknown keys are refused too: a misspelt key would
otherwise silently fall back to a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ciml.config.card import InferenceSpec, ModelCard, NetworkSpec, SubTask, Target, TrainingSpec
from ciml.config.fields import build
from ciml.errors import CardError


def card_from_dict(data: Any) -> ModelCard:
    """Build a :class:`ModelCard` from plain data, raising :class:`CardError` naming the field."""
    card = build(ModelCard, data)
    modalities, targets = card.modality_names, card.target_names
    _unique(modalities, "modalities")
    _unique(targets, "targets")
    for i, m in enumerate(card.modalities):
        if m.window is not None and m.window[0] >= m.window[1]:
            raise CardError(f"modalities[{i}].window", f"expected [low, high] with low < high, got {list(m.window)}")
    _check_targets(card.targets)
    for i, t in enumerate(card.targets):
        for j, m in enumerate(t.needs):
            _known(m, modalities, f"targets[{i}].needs[{j}]", "modality")
    for i, s in enumerate(card.subtasks):
        _check_subtask(s, f"subtasks[{i}]", modalities, targets)
    _unique(tuple(s.name for s in card.subtasks), "subtasks")
    _check_ownership(card.subtasks, targets)
    _known(card.reference, modalities, "reference", "modality")
    _check_network(card.network)
    dims, multiple = card.network.spatial_dims, card.network.window_multiple
    if card.spacing is not None:
        _rank(card.spacing, "spacing", dims)
    _check_inference(card.inference, dims, multiple)
    _check_training(card.training, dims, multiple, modalities)
    return card


def _unique(names: tuple[str, ...], path: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise CardError(f"{path}[{i}]", f"duplicate {n!r}")
        seen.add(n)


def _known(name: str, known: tuple[str, ...], path: str, what: str) -> None:
    if name not in known:
        raise CardError(path, f"{name!r} is not a {what} of this card (known: {', '.join(known)})")


def _check_targets(targets: tuple[Target, ...]) -> None:
    """Each target's region includes its own label, and no two targets share a label."""
    seen: dict[int, str] = {}
    for i, t in enumerate(targets):
        if t.label not in t.includes:
            raise CardError(f"targets[{i}].includes", f"must contain the target's own label {t.label}")
        if t.label in seen:
            raise CardError(f"targets[{i}].label", f"label value {t.label} is already used by target {seen[t.label]!r}")
        seen[t.label] = t.name


def _check_subtask(s: SubTask, path: str, modalities: tuple[str, ...], targets: tuple[str, ...]) -> None:
    """A sub-task names known targets and modalities, each once, and never its primary as an
    auxiliary."""
    for i, t in enumerate(s.targets):
        _known(t, targets, f"{path}.targets[{i}]", "target")
    _unique(s.targets, f"{path}.targets")
    _known(s.primary, modalities, f"{path}.primary", "modality")
    for i, a in enumerate(s.auxiliaries):
        _known(a, modalities, f"{path}.auxiliaries[{i}]", "modality")
        if a == s.primary:
            raise CardError(f"{path}.auxiliaries[{i}]", f"{a!r} is this sub-task's primary; "
                            "a modality cannot be its own auxiliary")
    _unique(s.auxiliaries, f"{path}.auxiliaries")


def _check_ownership(subtasks: tuple[SubTask, ...], targets: tuple[str, ...]) -> None:
    """Every target belongs to exactly one sub-task."""
    owner: dict[str, str] = {}
    for i, s in enumerate(subtasks):
        for t in s.targets:
            if t in owner:
                raise CardError(f"subtasks[{i}].targets", f"target {t!r} is already predicted by "
                                f"sub-task {owner[t]!r}; each target belongs to one sub-task")
            owner[t] = s.name
    orphans = [t for t in targets if t not in owner]
    if orphans:
        raise CardError("subtasks", f"no sub-task predicts target(s) {', '.join(orphans)}")


def _check_network(net: NetworkSpec) -> None:
    """Gate levels name existing levels, each once."""
    levels = len(net.features)
    for i, lv in enumerate(net.gate_levels):
        if not -levels <= lv < levels:
            raise CardError(f"network.gate_levels[{i}]", f"{lv} is outside the {levels} levels")
    if len(net.resolved_gate_levels()) != len(net.gate_levels):
        raise CardError("network.gate_levels", f"{list(net.gate_levels)} names the same level twice")


def _rank(values: tuple, path: str, dims: int) -> None:
    if len(values) != dims:
        raise CardError(path, f"needs {dims} values (network.spatial_dims), got {len(values)}")


def _shape(sizes: tuple[int, ...], path: str, dims: int, multiple: int) -> None:
    """A window or patch has one size per spatial dimension, each divisible by every level."""
    _rank(sizes, path, dims)
    for i, v in enumerate(sizes):
        if v % multiple:
            raise CardError(f"{path}[{i}]", f"{v} is not a multiple of {multiple} "
                            "(2 ** (levels - 1), so that every level divides it)")


def _check_inference(inference: InferenceSpec, dims: int, multiple: int) -> None:
    _shape(inference.roi_size, "inference.roi_size", dims, multiple)
    voxels = inference.window_voxels
    if voxels is not None and 0 < voxels < multiple ** dims:
        raise CardError("inference.window_voxels", f"{voxels} is smaller than the smallest window "
                        f"({multiple}^{dims} voxels); 0 uses windows of roi_size")


def _check_training(training: TrainingSpec, dims: int, multiple: int, modalities: tuple[str, ...]) -> None:
    _shape(training.patch_size, "training.patch_size", dims, multiple)
    rates = training.missing_rates
    for m in rates:
        _known(m, modalities, f"training.missing_rates.{m}", "modality")
    if rates and len(rates) == len(modalities) and min(rates.values()) >= 1.0:
        raise CardError("training.missing_rates", "every modality always missing leaves no input")


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a card from a JSON (or YAML) file."""
    path = Path(path)
    if not path.is_file():
        raise CardError(str(path), "file not found")
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # optional: only YAML cards need it, and Slicer's own Python may lack it

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any read or syntax error becomes one message
        raise CardError(str(path), f"cannot be parsed: {exc}") from None
    return card_from_dict(data)
