"""Counting a network's weights: the one measure of size that bundles, `ciml init`, the
benchmark and the early-fusion width matching share."""

from torch import nn


def parameter_count(module: nn.Module) -> int:
    """How many weights ``module`` has, trainable or not."""
    return sum(p.numel() for p in module.parameters())
