"""The effective configuration of a training run: card, config file and command line merged.

Precedence, lowest first: the base card (a preset, a card file, or the ``--init`` bundle's
card), then the config file (``--config``, YAML or JSON), then the command line. The result is
validated as one card, so a bad value anywhere gets the usual message naming its field.

A config file holds any of::

    preset: brats            # or card: path/to/card.json   (the base card)
    arch: ciml
    max_steps: 2000          # or epochs: 50
    max_minutes: 30          # a wall-clock limit: stop, validate, keep the best bundle
    val_fraction: 0.2
    device: auto
    layout: brats2020
    unlabeled: path/to/unlabelled/cases
    freeze_encoders: false
    bundle: best             # RUN/bundle: the best validation Dice, or last (the last weights)
    keep_bundles: false      # also keep the weights of every validation step: RUN/bundles/step-N
    num_workers: 2
    cache: memory
    training: {learning_rate: 0.0005, batch_size: 2, ...}   # any card section, merged
    network: {...}
    inference: {...}
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from ciml.config import ModelCard, card_from_dict, load_card, preset
from ciml.errors import CIMLError

CARD_SECTIONS = ("training", "network", "inference")
RUN_KEYS = ("preset", "card", "arch", "max_steps", "max_minutes", "epochs", "val_fraction", "device", "layout",
            "unlabeled",
            "freeze_encoders", "bundle", "keep_bundles", "num_workers", "cache", "init", "seed", "missing_rates", *CARD_SECTIONS)


def read_config(path: str | Path) -> dict[str, Any]:
    """A run configuration file as a dict; unknown keys are refused."""
    path = Path(path)
    if not path.is_file():
        raise CIMLError(f"--config {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}  # YAML is a superset of JSON
    except Exception as exc:  # noqa: BLE001 - one message for any syntax error
        raise CIMLError(f"--config {path}: cannot be parsed ({exc})") from None
    if not isinstance(data, dict):
        raise CIMLError(f"--config {path}: expected a mapping of settings")
    unknown = sorted(set(data) - set(RUN_KEYS))
    if unknown:
        raise CIMLError(f"--config {path}: unknown setting {unknown[0]!r} (known: {', '.join(RUN_KEYS)})")
    return data


def parse_rates(text: str) -> dict[str, float]:
    """``"t1=0.3,t2=0.5"`` -> ``{"t1": 0.3, "t2": 0.5}``."""
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise CIMLError(f"--missing-rates: expected NAME=P pairs separated by commas, got {part!r}")
    return rates


def merged_settings(config: dict[str, Any], cli: dict[str, Any]) -> dict[str, Any]:
    """Config file settings overridden by the command-line values that were given (not None)."""
    settings = copy.deepcopy(config)
    for key, value in cli.items():
        if value is None:
            continue
        if key in CARD_SECTIONS:
            settings[key] = {**settings.get(key, {}), **value}
        else:
            settings[key] = value
    return settings


def effective_card(settings: dict[str, Any], base: ModelCard | None = None) -> ModelCard:
    """The run's card: the base card with the settings' sections and switches applied.

    Args:
        settings: :func:`merged_settings`.
        base: the ``--init`` bundle's card, which then takes the place of preset/card.
    """
    if base is None:
        if settings.get("preset") and settings.get("card"):
            raise CIMLError("give either a preset or a card, not both")
        if settings.get("card"):
            base = load_card(settings["card"])
        else:
            base = preset(settings.get("preset") or _missing_card())
    card = base.to_dict()
    for section in CARD_SECTIONS:
        card[section] = {**card.get(section, {}), **settings.get(section, {})}
    if settings.get("seed") is not None:
        card["training"]["seed"] = settings["seed"]
    if settings.get("missing_rates"):
        card["training"]["missing_rates"] = settings["missing_rates"]
        if settings.get("arch", "ciml") == "ciml":
            card["network"]["modality_heads"] = True  # CIML's unimodal outputs for PASSION's unimodal losses
    if settings.get("unlabeled"):
        card["network"]["level_set_head"] = True  # DTC's second task
    return card_from_dict(card)


def _missing_card() -> str:
    raise CIMLError("say which model to train: --preset NAME, --card FILE, --init BUNDLE or 'preset:' in --config")


def max_minutes(value: Any) -> float | None:
    """The run's wall-clock limit in minutes (``--max-minutes``, or ``max_minutes`` in a config
    file): a finite number > 0, or None for no limit."""
    if value is None:
        return None
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        minutes = float("nan")
    if not math.isfinite(minutes) or minutes <= 0 or isinstance(value, bool):
        raise CIMLError(f"--max-minutes {value}: expected a number of minutes > 0")
    return minutes


def steps_for_epochs(epochs: int, train_cases: int, batch_size: int, world_size: int = 1) -> int:
    """Optimiser steps that show every training case ``epochs`` times on average."""
    return max(1, epochs * -(-train_cases // (batch_size * world_size)))
