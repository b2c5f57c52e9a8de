"""The worker's JSON-lines progress: incremental parsing and the texts shown to the user.

Plain Python on the standard library only, tested outside Slicer.
"""

import json
from typing import Dict, List, Optional


class JsonLineParser:
    """Feed it stdout chunks as they arrive; it returns the complete JSON events.

    A line may arrive in pieces (kept until its newline), and anything that is not a JSON object
    (a library printing to stdout, a warning) is kept in ``noise`` for the log, never raised.
    """

    def __init__(self, max_noise: int = 200):
        self._pending = ""
        self.noise: List[str] = []
        self._max_noise = max_noise

    def feed(self, chunk: str) -> List[Dict]:
        self._pending += chunk
        *lines, self._pending = self._pending.split("\n")
        return [e for e in (self._parse(line) for line in lines) if e is not None]

    def flush(self) -> List[Dict]:
        """At the end of the stream: parse whatever remains without a final newline."""
        rest, self._pending = self._pending, ""
        event = self._parse(rest)
        return [event] if event is not None else []

    def _parse(self, line: str) -> Optional[Dict]:
        line = line.strip()
        if not line:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "event" in event:
            return event
        self.noise = (self.noise + [line])[-self._max_noise:]
        return None


def format_duration(seconds: Optional[float]) -> str:
    """0:07, 2:05, 1:02:03 (hours only when needed); '' for unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def stage_title(stage: str) -> str:
    """'sliding_window' -> 'Sliding window'."""
    text = str(stage or "working").replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def progress_percent(event: Dict) -> int:
    """The progress bar value, 0..100, clamped (a worker may overshoot by rounding)."""
    try:
        fraction = float(event.get("fraction", 0.0))
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, int(round(fraction * 100))))


def status_text(event: Dict) -> str:
    """One line for the status label from a progress, done or error event."""
    kind = event.get("event")
    if kind == "done":
        return "Done."
    if kind == "error":
        return "Failed: " + str(event.get("message", "unknown error"))
    text = f"{stage_title(event.get('stage', ''))}: {progress_percent(event)}%"
    eta = format_duration(event.get("eta_s"))
    return f"{text}, about {eta} left" if eta else text


def elapsed_text(seconds: float) -> str:
    return "Elapsed " + (format_duration(seconds) or "0:00")
