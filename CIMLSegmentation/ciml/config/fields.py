"""Card fields that carry their own constraints, and the one walker that checks them.

A card dataclass declares each field with :func:`spec` (its default, range, choices, length...);
:func:`build` walks a dataclass's fields from plain data, checks each value against its type
annotation and its spec, and names the field by its path in the card (``network.gate_levels[0]``).
The rules that relate several fields (sub-tasks name known targets, sizes divide by the
network's strides...) live in :mod:`ciml.config.validate`.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from dataclasses import field as dataclass_field
from typing import Any

from ciml.errors import CardError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Spec:
    """What a field accepts besides its type (``None``: no such constraint).

    Args:
        low, high: inclusive bounds of a number, or of each number in a list or mapping.
        choices: the values a string (or each string of a list) may take.
        min_len: the fewest entries of a list (of a string: non-blank characters).
        name: the string is an identifier (a letter, then letters, digits, ``_`` or ``-``).
        keys: keys a mapping must have.
        derive: the default when the field is absent, from the fields of its section parsed
            before it and the card's sections parsed so far: ``derive(section, card)``.
    """

    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    min_len: int | None = None
    name: bool = False
    keys: tuple[str, ...] = ()
    derive: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None


def spec(default: Any = MISSING, *, factory: Any = MISSING, **constraints: Any) -> Any:
    """A dataclass field with its default and its :class:`Spec` (keyword arguments of ``Spec``)."""
    return dataclass_field(default=default, default_factory=factory, metadata={"spec": Spec(**constraints)})


def describe(value: Any) -> str:
    """A value as a user reads it in a JSON card: ``the string "false"``, ``null``, ``a list``."""
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def mapping(value: Any, path: str, cls: type | None = None) -> dict[str, Any]:
    """``value`` as an object; with ``cls``, refusing keys that are not its fields (a misspelt key
    would otherwise silently fall back to its default)."""
    if not isinstance(value, dict):
        raise CardError(path, f"expected an object, got {describe(value)}")
    if cls is not None:
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise CardError(_join(path, unknown[0]), f"unknown field (known: {', '.join(known)})")
    return value


def build(cls: type, raw: Any, path: str = "", card: dict[str, Any] | None = None) -> Any:
    """An instance of the card dataclass ``cls`` from plain data, every field checked.

    Args:
        cls: a dataclass whose fields are declared with :func:`spec` (or plain defaults).
        raw: the plain data (an object).
        path: the section's path in the card, for messages ("" for the card itself).
        card: the card's top-level values parsed so far (what ``derive`` reads across sections).
    """
    d = mapping(raw, path, cls)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    card = values if card is None else card
    for f in fields(cls):
        where, rule = _join(path, f.name), f.metadata.get("spec", Spec())
        if f.name in d:
            values[f.name] = parse(d[f.name], hints[f.name], where, rule, card)
        elif rule.derive is not None:
            values[f.name] = parse(rule.derive(values, card), hints[f.name], where, rule, card)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise CardError(where, "missing")
        elif is_dataclass(hints[f.name]):
            values[f.name] = build(hints[f.name], {}, where, card)
        else:
            values[f.name] = f.default_factory() if f.default is MISSING else f.default
    return cls(**values)


def parse(value: Any, tp: Any, path: str, rule: Spec, card: dict[str, Any]) -> Any:
    """One value checked against its type annotation ``tp`` and its field's ``rule``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        inner = [a for a in args if a is not type(None)]
        return None if value is None else parse(value, inner[0], path, rule, card)
    if is_dataclass(tp):
        return build(tp, value, path, card)
    if origin is tuple:
        items = _sequence(value, path, rule, fixed=None if args[-1] is Ellipsis else len(args))
        kinds = [args[0]] * len(items) if args[-1] is Ellipsis else list(args)
        return tuple(parse(v, k, f"{path}[{i}]", _element(rule), card) for i, (v, k) in enumerate(zip(items, kinds)))
    if origin is dict:
        d = mapping(value, path)
        missing = [k for k in rule.keys if k not in d]
        if missing:
            raise CardError(path, f"missing {', '.join(missing)}")
        return {k: parse(v, args[1], _join(path, k), _element(rule), card) for k, v in d.items()}
    return _scalar(value, tp, path, rule)


def _scalar(value: Any, tp: type, path: str, rule: Spec) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise CardError(path, f"expected true or false, got {describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise CardError(path, f"expected a string, got {describe(value)}")
        if rule.name and not NAME.match(value):
            raise CardError(path, f"{value!r} is not a valid name (a letter, then letters, digits, _ or -)")
        if rule.min_len and len(value.strip()) < rule.min_len:
            raise CardError(path, "must be a non-empty string")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
        raise CardError(path, f"expected {'an integer' if tp is int else 'a number'}, got {describe(value)}")
    if rule.choices is not None and value not in rule.choices:
        raise CardError(path, f"{describe(value)} is not one of {', '.join(map(str, rule.choices))}")
    if tp in (int, float):
        _check_range(value, path, rule)
        return float(value) if tp is float else value
    return value


def _check_range(value: float, path: str, rule: Spec) -> None:
    low, high = rule.low, rule.high
    if (low is not None and value < low) or (high is not None and value > high):
        bound = (f"lie in [{low}, {high}]" if low is not None and high is not None
                 else f"be at least {low}" if low is not None else f"be at most {high}")
        raise CardError(path, f"must {bound}, got {value}")


def _sequence(value: Any, path: str, rule: Spec, fixed: int | None) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise CardError(path, f"expected a list, got {describe(value)}")
    if fixed is not None and len(value) != fixed:
        raise CardError(path, f"expected {fixed} values, got {len(value)}")
    if rule.min_len is not None and len(value) < rule.min_len:
        raise CardError(path, f"needs at least {rule.min_len} entr{'y' if rule.min_len == 1 else 'ies'}")
    return list(value)


def _element(rule: Spec) -> Spec:
    """The constraints a list's or a mapping's entries keep: range, choices, name."""
    return Spec(low=rule.low, high=rule.high, choices=rule.choices, name=rule.name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Every field's dotted path, sections included (``network.gate_levels``; list entries as
    ``modalities[i].name``), in declaration order."""
    hints, out = typing.get_type_hints(cls), []
    for f in fields(cls):
        path, tp = _join(prefix, f.name), hints[f.name]
        out.append(path)
        args = typing.get_args(tp)
        if is_dataclass(tp):
            out += field_paths(tp, path)
        elif typing.get_origin(tp) is tuple and args and is_dataclass(args[0]):
            out += field_paths(args[0], f"{path}[i]")
    return out
