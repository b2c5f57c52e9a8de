"""The model card (`ModelCard`): what a model reads and predicts, how the task is decomposed,
and every hyperparameter; its validation and the presets.

``card`` holds the dataclasses (each field's default and constraints, written once with
``fields.spec``), ``fields`` the one walker that checks every field's type, range and choices,
``validate`` the rules across fields and the entry points (plain data or a file, one message per
problem), ``presets`` the built-in cards. Imports neither torch nor numpy: the Slicer module
reads cards in its own process through this package.
"""

from ciml.config.card import (
    DTCSpec,
    InferenceSpec,
    Modality,
    ModelCard,
    NetworkSpec,
    PassionSpec,
    SubTask,
    Target,
    TrainingSpec,
)
from ciml.config.presets import PRESETS, preset, preset_dict
from ciml.config.validate import card_from_dict, load_card

__all__ = [
    "DTCSpec", "InferenceSpec", "Modality", "ModelCard", "NetworkSpec", "PassionSpec", "SubTask", "Target",
    "TrainingSpec",
    "card_from_dict", "load_card", "PRESETS", "preset", "preset_dict",
]
