"""Training losses: the supervised CIML loss, and the PASSION and DTC terms.

May import torch, MONAI, ``ciml.config``, ``ciml.data`` and ``ciml.nn`` (the outputs they score).
"""

from ciml.losses.dtc import DTCLoss, DTCTerms, sigmoid_rampup, signed_distance
from ciml.losses.passion import (
    PassionLoss,
    PassionTerms,
    binary_kl,
    inverse_frequency_weights,
    similarity_maps,
)
from ciml.losses.segmentation import CIMLLoss, LossTerms

__all__ = ["CIMLLoss", "LossTerms", "PassionLoss", "PassionTerms", "binary_kl", "inverse_frequency_weights",
           "similarity_maps", "DTCLoss", "DTCTerms", "sigmoid_rampup", "signed_distance"]
