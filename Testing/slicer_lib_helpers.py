"""Makes the Slicer module's plain modules importable outside Slicer (no slicer, no qt), and the
stand-ins the process tests share."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "CIMLSegmentation"
SAMPLE_BUNDLE = MODULE_DIR / "Resources" / "Models" / "brats-sample"  # the built-in model, as shipped
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped by whoever adopted it."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class FakeTimer:
    """Stands in for the qt.QTimer the logic passes; the test fires it as Qt's event loop would.
    ``made`` lists every timer made, ``last`` is the newest."""

    made: list = []
    last = None

    def __init__(self, interval_ms, callback):
        self.interval_ms, self.callback, self.active = interval_ms, callback, False
        FakeTimer.made.append(self)
        FakeTimer.last = self

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def run(self, limit_s=20.0):
        deadline = time.monotonic() + limit_s
        while self.active and time.monotonic() < deadline:
            self.callback()
            time.sleep(self.interval_ms / 1000)
        assert not self.active, "the job never stopped its timer"
