"""The timer that drives a background job's ``poll()`` from Slicer's event loop: the
``job.TimerFactory`` that the logic's segmentation and training jobs and the sample case's job
take. Glue: imports qt at the top."""

import qt


def pollTimer(intervalMs, callback):
    """A ``qt.QTimer`` that calls ``callback`` every ``intervalMs`` once started."""
    timer = qt.QTimer()
    timer.setInterval(intervalMs)
    timer.connect("timeout()", callback)
    return timer
