"""Training losses: the supervised CIML loss, and the PASSION and DTC terms."""

from ciml.losses.segmentation import CIMLLoss, LossTerms

__all__ = ["CIMLLoss", "LossTerms"]
