"""Parsing plain data into a :class:`ModelCard`, with one clear message per problem.

Every message names the field by its path in the card (``subtasks[1].primary``), so that a user
editing a JSON file can find it. Unknown keys are refused too: a misspelt key would otherwise
silently fall back to a default.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from ciml.config.card import (
    DEFAULT_NORMALIZATION,
    DEFAULT_WINDOW,
    GATE_MESSAGES,
    MODALITY_KINDS,
    NORMALIZATIONS,
    OUTPUT_PRIORS,
    InferenceSpec,
    Modality,
    ModelCard,
    NetworkSpec,
    SubTask,
    Target,
    TrainingSpec,
)
from ciml.errors import CardError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _default(cls: type, name: str) -> Any:
    """The dataclass's own default for a field: the one place each default is written."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


def _getter(d: dict[str, Any], cls: type):
    """``get(key)``: the card's value for ``key``, else the dataclass default."""
    return lambda key: d[key] if key in d else _default(cls, key)


def _mapping(value: Any, path: str, cls: type | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CardError(path, f"expected an object, got {type(value).__name__}")
    if cls is not None:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise CardError(f"{path}.{unknown[0]}" if path else unknown[0],
                            f"unknown field (known: {', '.join(sorted(known))})")
    return value


def _list(value: Any, path: str, min_len: int = 0) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise CardError(path, f"expected a list, got {type(value).__name__}")
    if len(value) < min_len:
        raise CardError(path, f"needs at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
    return list(value)


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise CardError(path, f"{value!r} is not a valid name (a letter, then letters, digits, _ or -)")
    return value


def _int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CardError(path, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise CardError(path, f"must be at least {minimum}, got {value}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise CardError(path, f"expected true or false, got {value!r}")
    return value


def _float(value: Any, path: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(path, f"expected a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise CardError(path, f"must lie in [{low}, {high}], got {value}")
    return float(value)


def _unique(names: list[str], path: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise CardError(f"{path}[{i}]", f"duplicate {n!r}")
        seen.add(n)


def _known(name: Any, known: tuple[str, ...], path: str, what: str) -> str:
    if name not in known:
        raise CardError(path, f"{name!r} is not a {what} of this card (known: {', '.join(known)})")
    return name


def _modality(raw: Any, path: str) -> Modality:
    d = _mapping(raw, path, Modality)
    name = _name(d.get("name"), f"{path}.name")
    kind = d.get("kind", _default(Modality, "kind"))
    if kind not in MODALITY_KINDS:
        raise CardError(f"{path}.kind", f"{kind!r} is not one of {', '.join(MODALITY_KINDS)}")
    norm = d.get("normalization") or DEFAULT_NORMALIZATION[kind]
    if norm not in NORMALIZATIONS:
        raise CardError(f"{path}.normalization", f"{norm!r} is not one of {', '.join(NORMALIZATIONS)}")
    window = d.get("window")
    if window is None and norm in ("window", "suv_clip"):
        window = DEFAULT_WINDOW.get(kind, DEFAULT_WINDOW["CT"] if norm == "window" else DEFAULT_WINDOW["PET"])
    if window is not None:
        w = _list(window, f"{path}.window")
        if len(w) != 2 or _float(w[0], f"{path}.window[0]") >= _float(w[1], f"{path}.window[1]"):
            raise CardError(f"{path}.window", f"expected [low, high] with low < high, got {window!r}")
        window = (float(w[0]), float(w[1]))
    return Modality(name=name, kind=kind, normalization=norm, window=window)


def _target(raw: Any, path: str) -> Target:
    d = _mapping(raw, path, Target)
    label = _int(d.get("label"), f"{path}.label", minimum=1)
    includes = tuple(_int(v, f"{path}.includes[{i}]", minimum=1)
                     for i, v in enumerate(_list(d.get("includes", [label]), f"{path}.includes", 1)))
    if label not in includes:
        raise CardError(f"{path}.includes", f"must contain the target's own label {label}")
    color = _list(d.get("color", _default(Target, "color")), f"{path}.color")
    if len(color) != 3:
        raise CardError(f"{path}.color", f"expected [r, g, b] in 0..1, got {color!r}")
    color = tuple(_float(c, f"{path}.color[{i}]", 0.0, 1.0) for i, c in enumerate(color))
    term = d.get("terminology")
    if term is not None:
        term = _mapping(term, f"{path}.terminology")
        missing = {"scheme", "code", "meaning"} - set(term)
        if missing:
            raise CardError(f"{path}.terminology", f"missing {', '.join(sorted(missing))}")
        term = {k: str(v) for k, v in term.items()}
    return Target(name=_name(d.get("name"), f"{path}.name"), label=label, includes=includes,
                  color=color, terminology=term)


def _subtask(raw: Any, path: str, modalities: tuple[str, ...], targets: tuple[str, ...]) -> SubTask:
    d = _mapping(raw, path, SubTask)
    name = _name(d.get("name"), f"{path}.name")
    tnames = _list(d.get("targets"), f"{path}.targets", 1)
    for i, t in enumerate(tnames):
        _known(t, targets, f"{path}.targets[{i}]", "target")
    _unique(tnames, f"{path}.targets")
    if d.get("primary") is None:
        raise CardError(f"{path}.primary", "missing: every sub-task needs a primary modality")
    primary = _known(d["primary"], modalities, f"{path}.primary", "modality")
    aux = _list(d.get("auxiliaries", []), f"{path}.auxiliaries")
    for i, a in enumerate(aux):
        _known(a, modalities, f"{path}.auxiliaries[{i}]", "modality")
        if a == primary:
            raise CardError(f"{path}.auxiliaries[{i}]", f"{a!r} is this sub-task's primary; "
                            "a modality cannot be its own auxiliary")
    _unique(aux, f"{path}.auxiliaries")
    return SubTask(name=name, targets=tuple(tnames), primary=primary, auxiliaries=tuple(aux))


def _shape(raw: Any, path: str, dims: int, multiple: int) -> tuple[int, ...]:
    values = _list(raw, path)
    if len(values) != dims:
        raise CardError(path, f"needs {dims} sizes (network.spatial_dims), got {len(values)}")
    out = tuple(_int(v, f"{path}[{i}]", minimum=1) for i, v in enumerate(values))
    for i, v in enumerate(out):
        if v % multiple:
            raise CardError(f"{path}[{i}]", f"{v} is not a multiple of {multiple} "
                            "(2 ** (levels - 1), so that every level divides it)")
    return out


def _network(raw: Any) -> NetworkSpec:
    d = _mapping(raw, "network", NetworkSpec)
    get = _getter(d, NetworkSpec)
    dims = _int(get("spatial_dims"), "network.spatial_dims")
    if dims not in (2, 3):
        raise CardError("network.spatial_dims", f"must be 2 or 3, got {dims}")
    feats = tuple(_int(f, f"network.features[{i}]", minimum=1)
                  for i, f in enumerate(_list(get("features"), "network.features", 2)))
    # Absent, the gates follow the card's own depth rather than the default features' four levels.
    raw_levels = d["gate_levels"] if "gate_levels" in d else list(range(len(feats)))
    levels = [_int(v, f"network.gate_levels[{i}]")
              for i, v in enumerate(_list(raw_levels, "network.gate_levels"))]
    for i, lv in enumerate(levels):
        if not -len(feats) <= lv < len(feats):
            raise CardError(f"network.gate_levels[{i}]", f"{lv} is outside the {len(feats)} levels")
    spec = NetworkSpec(
        spatial_dims=dims, features=feats, gate_levels=tuple(levels),
        kernel_size=_int(get("kernel_size"), "network.kernel_size", minimum=1),
        norm=str(get("norm")),
        dropout=_float(get("dropout"), "network.dropout", 0.0, 1.0),
        gate_bottleneck=bool(get("gate_bottleneck")),
        gate_attention=bool(get("gate_attention")),
        gate_message=_known(get("gate_message"), GATE_MESSAGES, "network.gate_message", "gate message"),
        modality_heads=bool(get("modality_heads")),
        level_set_head=bool(get("level_set_head")))
    if len(spec.resolved_gate_levels()) != len(levels):
        raise CardError("network.gate_levels", f"{levels} names the same level twice")
    return spec


def _inference(raw: Any, dims: int, multiple: int) -> InferenceSpec:
    d = _mapping(raw, "inference", InferenceSpec)
    get = _getter(d, InferenceSpec)
    blend = get("blend")
    if blend not in ("gaussian", "constant"):
        raise CardError("inference.blend", f"{blend!r} is not gaussian or constant")
    return InferenceSpec(
        roi_size=_shape(d.get("roi_size", _default(InferenceSpec, "roi_size")[:dims]), "inference.roi_size", dims, multiple),
        overlap=_float(get("overlap"), "inference.overlap", 0.0, 0.95),
        sw_batch_size=_int(get("sw_batch_size"), "inference.sw_batch_size", minimum=1),
        blend=blend, threshold=_float(get("threshold"), "inference.threshold", 0.0, 1.0),
        effect_floor=_float(get("effect_floor"), "inference.effect_floor", 1e-6, 0.5),
        crop=_bool(get("crop"), "inference.crop"),
        crop_margin=_int(get("crop_margin"), "inference.crop_margin", minimum=0),
        window_voxels=_window_voxels(get("window_voxels"), "inference.window_voxels", multiple, dims))


def _window_voxels(raw: Any, path: str, multiple: int, dims: int) -> int | None:
    if raw is None:
        return None
    value = _int(raw, path, minimum=0)
    if 0 < value < multiple ** dims:
        raise CardError(path, f"{value} is smaller than the smallest window ({multiple}^{dims} voxels); "
                        "0 uses windows of roi_size")
    return value


def _missing_rates(raw: Any, modalities: tuple[str, ...]) -> dict[str, float]:
    rates = _mapping(raw, "training.missing_rates")
    out = {_known(m, modalities, f"training.missing_rates.{m}", "modality"):
           _float(p, f"training.missing_rates.{m}", 0.0, 1.0) for m, p in rates.items()}
    if out and len(out) == len(modalities) and min(out.values()) >= 1.0:
        raise CardError("training.missing_rates", "every modality always missing leaves no input")
    return out


def _optional_int(value: Any, path: str, minimum: int | None = None) -> int | None:
    """``None`` (the field's documented default behaviour) or an integer of at least ``minimum``."""
    return None if value is None else _int(value, path, minimum)


def _training(raw: Any, dims: int, multiple: int, modalities: tuple[str, ...]) -> TrainingSpec:
    d = _mapping(raw, "training", TrainingSpec)
    get = _getter(d, TrainingSpec)

    def weight(key: str) -> float:
        return _float(get(key), f"training.{key}", 0.0, 1e6)

    return TrainingSpec(
        patch_size=_shape(d.get("patch_size", _default(TrainingSpec, "patch_size")[:dims]), "training.patch_size", dims, multiple),
        batch_size=_int(get("batch_size"), "training.batch_size", minimum=1),
        learning_rate=_float(get("learning_rate"), "training.learning_rate", 0.0, 10.0),
        weight_decay=_float(get("weight_decay"), "training.weight_decay", 0.0, 10.0),
        max_steps=_int(get("max_steps"), "training.max_steps", minimum=1),
        beta=_float(get("beta"), "training.beta", 0.0, 1e6),
        beta_warmup_steps=_int(get("beta_warmup_steps"), "training.beta_warmup_steps", minimum=0),
        free_bits=_float(get("free_bits"), "training.free_bits", 0.0, 100.0),
        output_prior=_known(get("output_prior"), OUTPUT_PRIORS, "training.output_prior", "output prior"),
        seed=_int(get("seed"), "training.seed", minimum=0),
        validation_interval=_int(get("validation_interval"), "training.validation_interval", minimum=1),
        patience=_int(get("patience"), "training.patience", minimum=0),
        warmup_steps=_int(get("warmup_steps"), "training.warmup_steps", minimum=0),
        deep_supervision_weight=weight("deep_supervision_weight"),
        missing_rates=_missing_rates(get("missing_rates"), modalities),
        passion=_bool(get("passion"), "training.passion"),
        distill_weight=weight("distill_weight"),
        prototype_weight=weight("prototype_weight"),
        passion_temperature=_float(get("passion_temperature"), "training.passion_temperature", 1e-3, 1e3),
        passion_epoch_steps=_optional_int(get("passion_epoch_steps"), "training.passion_epoch_steps", minimum=1),
        passion_warmup_epochs=_int(get("passion_warmup_epochs"), "training.passion_warmup_epochs", minimum=0),
        passion_preference_rate=_float(get("passion_preference_rate"), "training.passion_preference_rate", 0.0, 10.0),
        level_set_weight=weight("level_set_weight"),
        consistency_weight=weight("consistency_weight"),
        consistency_ramp_steps=_int(get("consistency_ramp_steps"), "training.consistency_ramp_steps", minimum=0),
        level_set_k=weight("level_set_k"))


def card_from_dict(data: Any) -> ModelCard:
    """Build a :class:`ModelCard` from plain data, raising :class:`CardError` naming the field."""
    d = _mapping(data, "", ModelCard)
    for key in ("name", "modalities", "targets", "subtasks", "reference"):
        if key not in d:
            raise CardError(key, "missing")
    modalities = tuple(_modality(m, f"modalities[{i}]")
                       for i, m in enumerate(_list(d["modalities"], "modalities", 1)))
    mnames = tuple(m.name for m in modalities)
    _unique(list(mnames), "modalities")
    targets = tuple(_target(t, f"targets[{i}]") for i, t in enumerate(_list(d["targets"], "targets", 1)))
    tnames = tuple(t.name for t in targets)
    _unique(list(tnames), "targets")
    seen_labels: dict[int, str] = {}
    for i, t in enumerate(targets):
        if t.label in seen_labels:
            raise CardError(f"targets[{i}].label", f"label value {t.label} is already used by "
                            f"target {seen_labels[t.label]!r}")
        seen_labels[t.label] = t.name
    subtasks = tuple(_subtask(s, f"subtasks[{i}]", mnames, tnames)
                     for i, s in enumerate(_list(d["subtasks"], "subtasks", 1)))
    _unique([s.name for s in subtasks], "subtasks")
    owner: dict[str, str] = {}
    for i, s in enumerate(subtasks):
        for t in s.targets:
            if t in owner:
                raise CardError(f"subtasks[{i}].targets", f"target {t!r} is already predicted by "
                                f"sub-task {owner[t]!r}; each target belongs to one sub-task")
            owner[t] = s.name
    orphans = [t for t in tnames if t not in owner]
    if orphans:
        raise CardError("subtasks", f"no sub-task predicts target(s) {', '.join(orphans)}")
    reference = _known(d["reference"], mnames, "reference", "modality")
    network = _network(d.get("network", {}))
    dims, multiple = network.spatial_dims, 2 ** (len(network.features) - 1)
    spacing = d.get("spacing")
    if spacing is not None:
        values = _list(spacing, "spacing")
        if len(values) != dims:
            raise CardError("spacing", f"needs {dims} values (network.spatial_dims), got {len(values)}")
        spacing = tuple(_float(v, f"spacing[{i}]", 1e-3, 1e3) for i, v in enumerate(values))
    name = d["name"]
    if not isinstance(name, str) or not name.strip():
        raise CardError("name", "must be a non-empty string")
    return ModelCard(
        name=name, description=str(d.get("description", _default(ModelCard, "description"))), modalities=modalities,
        targets=targets, subtasks=subtasks, reference=reference, spacing=spacing, network=network,
        inference=_inference(d.get("inference", {}), dims, multiple),
        training=_training(d.get("training", {}), dims, multiple, mnames))


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
