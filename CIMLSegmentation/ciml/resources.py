"""Where the files shipped with the module live (the built-in sample model)."""

from __future__ import annotations

from pathlib import Path

from ciml.errors import CIMLError

# ciml/ sits inside the Slicer module folder, next to the module's Resources/.
MODELS = Path(__file__).resolve().parent.parent / "Resources" / "Models"
SAMPLE_MODEL = MODELS / "brats-sample"


def builtin_model() -> Path:
    """The built-in sample model's bundle folder."""
    if not (SAMPLE_MODEL / "metadata.json").is_file():
        raise CIMLError(f"the built-in sample model is missing from {SAMPLE_MODEL}; reinstall, or "
                        "rebuild it with scripts/train_sample_model.sh")
    return SAMPLE_MODEL
