"""The worker's JSON-lines progress: incremental parsing and the texts shown to the user.

Every text for the user is written here as ``_("...")``, with ``_`` the translation function the
glue passes (Slicer's ``slicer.i18n.tr``; English when left out, as in pytest). Slicer's
translation tools collect the ``_("...")`` strings of each file under the file's context
(``CIMLSegmentationLib.progress``), and ``tr`` looks a string up under the context of the file
that calls it, which is this one: the two agree, as they do for a ``_("...")`` in the glue.

Plain Python on the standard library only, tested outside Slicer.
"""

import json
from typing import Callable, Dict, List, Optional

# The translation function a plain function takes as ``_``: English text in, the user's language out.
Translate = Callable[[str], str]


def untranslated(text: str) -> str:
    """The ``_`` of the plain half outside Slicer: the English text itself."""
    return text


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


def stage_title(stage: str, _: Translate = untranslated) -> str:
    """The title of a worker's stage: 'reading images' -> 'Reading images' in the user's language
    for the stages ``ciml segment``, ``ciml train`` and ``ciml sample-data`` report; another
    stage's name as it is, capitalised ('sliding_window' -> 'Sliding window')."""
    known = {"loading model": _("Loading model"), "reading images": _("Reading images"),
             "segmenting": _("Segmenting"), "writing": _("Writing"), "training": _("Training"),
             "validation": _("Validation"), "evaluating": _("Evaluating"),
             "sample case": _("Making the sample case")}
    key = str(stage or "").strip()
    if key in known:
        return known[key]
    text = (key or "working").replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def progress_percent(event: Dict) -> int:
    """The progress bar value, 0..100, clamped (a worker may overshoot by rounding)."""
    try:
        fraction = float(event.get("fraction", 0.0))
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, int(round(fraction * 100))))


def status_text(event: Dict, _: Translate = untranslated) -> str:
    """One line for the status label from a progress, done or error event.

    Args:
        event: one of the worker's JSON-lines events.
        _: the translation function (``slicer.i18n.tr`` in Slicer).
    """
    kind = event.get("event")
    if kind == "done":
        return _("Done.")
    if kind == "error":
        return _("Failed: {error}").format(error=event.get("message") or _("unknown error"))
    stage, percent = stage_title(event.get("stage", ""), _), progress_percent(event)
    eta = format_duration(event.get("eta_s"))
    if eta:
        return _("{stage}: {percent}%, about {eta} left").format(stage=stage, percent=percent, eta=eta)
    return _("{stage}: {percent}%").format(stage=stage, percent=percent)


def elapsed_text(seconds: float, _: Translate = untranslated) -> str:
    """'Elapsed 1:05' in the user's language."""
    return _("Elapsed {time}").format(time=format_duration(seconds) or "0:00")
