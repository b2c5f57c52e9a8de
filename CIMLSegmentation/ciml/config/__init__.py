"""The model card (`ModelCard`), its validation and the presets."""

from ciml.config.card import (
    InferenceSpec,
    Modality,
    ModelCard,
    NetworkSpec,
    SubTask,
    Target,
    TrainingSpec,
    card_from_dict,
    load_card,
)
from ciml.config.presets import PRESETS, preset, preset_dict

__all__ = [
    "InferenceSpec", "Modality", "ModelCard", "NetworkSpec", "SubTask", "Target", "TrainingSpec",
    "card_from_dict", "load_card", "PRESETS", "preset", "preset_dict",
]
