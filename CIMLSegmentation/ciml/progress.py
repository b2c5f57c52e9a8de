"""Progress for people (a terminal bar) and for programs (JSON lines on stdout).

The Slicer module reads ``--progress json``: one object per line,
``{"event": "progress", "stage": ..., "fraction": ..., "eta_s": ...}``, then
``{"event": "done", ...}`` or ``{"event": "error", "message": ...}``. Messages for people
always go to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from ciml.choices import PROGRESS_MODES


class Progress:
    """Reports stages and fractions in one of :data:`ciml.choices.PROGRESS_MODES`.

    Args:
        mode: ``bar`` (tqdm on stderr), ``json`` (JSON lines on ``stream``) or ``none``.
        stream: where JSON lines go (stdout by default).
    """

    def __init__(self, mode: str = "bar", stream: TextIO | None = None):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress mode must be one of {PROGRESS_MODES}")
        self.mode = mode
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self._bar = None
        self._stage = None

    def _emit(self, event: str, **fields: Any) -> None:
        if self.mode == "json":
            self.stream.write(json.dumps({"event": event, **fields}) + "\n")
            self.stream.flush()

    def update(self, stage: str, fraction: float, **fields: Any) -> None:
        """``fraction`` of the whole job (0..1) is done; ``stage`` names what runs now."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self._emit("progress", stage=stage, fraction=round(fraction, 4),
                   elapsed_s=round(elapsed, 1), eta_s=None if eta is None else round(eta, 1), **fields)
        if self.mode == "bar":
            self._draw(stage, fraction, fields)

    def _draw(self, stage: str, fraction: float, fields: dict[str, Any]) -> None:
        if self._bar is None:
            self._bar = tqdm(total=1000, file=sys.stderr, leave=True, dynamic_ncols=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        if stage != self._stage:
            self._bar.set_description_str(stage)
            self._stage = stage
        if fields:
            self._bar.set_postfix({k: v for k, v in fields.items() if isinstance(v, (int, float, str))},
                                  refresh=False)
        self._bar.n = int(fraction * 1000)
        self._bar.refresh()

    def message(self, text: str) -> None:
        """A line for people, on stderr."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def done(self, **fields: Any) -> None:
        self._close()
        self._emit("done", elapsed_s=round(time.monotonic() - self.started, 2), **fields)

    def error(self, message: str) -> None:
        self._close()
        self._emit("error", message=message)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
