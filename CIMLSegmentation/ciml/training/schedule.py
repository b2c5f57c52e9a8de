"""The learning-rate schedule of a training run."""

from __future__ import annotations

import math
from collections.abc import Callable

# Steps of a run that only its time limit ends (``--max-minutes`` without steps or epochs).
UNTIL_TIME_LIMIT = 10**9


def cosine_with_warmup(max_steps: int, warmup: int, time_used: Callable[[], float] | None = None):
    """Learning-rate factor per step: linear warm-up, then cosine decay to zero.

    ``time_used()`` (optional) is the share of the run's time limit used so far; the decay then
    follows the steps or the clock, whichever is further along.
    """
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(max_steps - warmup, 1)
        if time_used is not None:
            progress = max(progress, time_used())
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor
