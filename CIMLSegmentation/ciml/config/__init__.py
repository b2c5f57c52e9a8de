"""The model card (`ModelCard`): what a model reads and predicts, how the task is decomposed,
and every hyperparameter; its validation and the presets.

``card`` holds the dataclasses (and their defaults, written once), ``validate`` builds a card
from plain data or a file with one message per problem, ``presets`` the built-in cards. Imports
neither torch nor numpy: the Slicer module reads cards in its own process through this package.
"""

from ciml.config.card import (
    InferenceSpec,
    Modality,
    ModelCard,
    NetworkSpec,
    SubTask,
    Target,
    TrainingSpec,
)
from ciml.config.presets import PRESETS, preset, preset_dict
from ciml.config.validate import card_from_dict, load_card

__all__ = [
    "InferenceSpec", "Modality", "ModelCard", "NetworkSpec", "SubTask", "Target", "TrainingSpec",
    "card_from_dict", "load_card", "PRESETS", "preset", "preset_dict",
]
