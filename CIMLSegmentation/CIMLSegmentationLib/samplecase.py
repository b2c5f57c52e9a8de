"""The sample case offered in Slicer's Sample Data module: its names, files and making.

There is no hosted download: the case is the worker's synthetic BraTS-like case
(``python -m ciml sample-data --kind brats --cases 1``), which needs only numpy and SimpleITK,
both shipped with Slicer, so it works before the worker's other dependencies are installed.
It is generated once into the folder where Sample Data keeps its downloads (Slicer's remote
cache folder), under the file names registered with Sample Data; Sample Data then finds the
files there and loads them as it loads any cached download ("File already exists in cache -
reusing it", ``SampleDataLogic.downloadFile`` at every Slicer from 5.8 to 5.13).

The worker runs as a ``job.BackgroundJob`` (``SampleCaseJob``), as a segmentation does: started
with the same flags (no console window on Windows), polled from a timer so the GUI never waits on
it, cancellable with its whole process tree, its progress handed on as events of the worker's
JSON-lines shape. ``prepare_case`` waits for it, for scripts and the self-test.

Plain Python, tested outside Slicer with the real worker; ``slicerglue.sampledata`` registers it
with Sample Data, shows the job's progress and loads the files.
"""

import os
import re
from pathlib import Path
from typing import Dict, List, Optional

from .job import BackgroundJob, TimerFactory

CATEGORY = "CIML Segmentation"  # Sample Data's category key, shown as is before Slicer 5.12
SAMPLE_NAME = "CIMLBraTSSample"  # the button's text, and the name for SampleData.downloadSample()
KIND = "brats"
# What `ciml sample-data --kind brats --cases 1` writes (ciml.data.synthetic: case_ids and
# brats.MODALITIES; a test keeps these equal, as Slicer's process cannot import that package).
CASE_ID = "BraTS-sample-000"
MODALITIES = ("t1", "t1ce", "t2", "flair")
FILE_PREFIX = "CIMLSegmentation-"  # the remote cache folder is shared with every other sample
LOAD_FILE_TYPE = "VolumeFile"
CASES = 1
GENERATE_TIMEOUT_S = 300  # prepare_case's limit: the worker takes seconds
STAGE = "sample case"  # the stage of the progress events (progress.stage_title names it)
# What `ciml sample-data` writes to stderr when a case is complete (ciml.cli.sample_data).
WROTE_LINE = re.compile(r"^wrote (.+)$")
# The module folder (the worker's PYTHONPATH) and the button's picture, found from this plain file
# so that the glue, one folder deeper, need not count folders.
MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THUMBNAIL = os.path.join(MODULE_DIR, "Resources", "Icons", "CIMLSegmentation.png")


class SampleCaseError(Exception):
    """The sample case could not be made; the message is for the user."""


def node_name(modality: str) -> str:
    """'t1ce' -> 'BraTS-sample-000_t1ce', the name the panel's auto-selection recognises."""
    return f"{CASE_ID}_{modality}"


def file_name(modality: str) -> str:
    return f"{FILE_PREFIX}{CASE_ID}_{modality}.nii.gz"


def cached_files(cache_dir) -> Dict[str, Path]:
    """Modality -> the file Sample Data loads, in the cache folder."""
    return {m: Path(cache_dir) / file_name(m) for m in MODALITIES}


def missing_files(cache_dir) -> List[Path]:
    """The sample's files that are absent or empty (as Sample Data counts a partial download)."""
    return [path for path in cached_files(cache_dir).values()
            if not path.is_file() or path.stat().st_size == 0]


def generate_command(python: str, out_dir) -> List[str]:
    """The worker's command line that writes the case into ``out_dir``/<CASE_ID>/."""
    return [python, "-m", "ciml", "sample-data", "--kind", KIND, "--cases", str(CASES), "--out", str(out_dir)]


def progress_events(lines: List[str], written: int) -> List[Dict]:
    """The progress events of the worker's new stderr ``lines``: one per 'wrote <case folder>'
    line, the fraction of the cases written so far, counted on from ``written`` before them.
    ``ciml sample-data`` reports no JSON lines; these have their shape (``progress.status_text``)."""
    events = []
    for line in lines:
        if WROTE_LINE.match(line.strip()):
            written += 1
            events.append({"event": "progress", "stage": STAGE, "fraction": min(1.0, written / CASES)})
    return events


def source_arguments(cache_dir, thumbnail: str = "") -> Dict:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource``, the same at
    every Slicer from 5.8 to 5.13. The URIs point at the cached files themselves: Sample Data
    needs one per file, and it reuses a cached file rather than fetching its URI."""
    files = cached_files(cache_dir)
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": [files[m].resolve().as_uri() for m in MODALITIES],
        "fileNames": [file_name(m) for m in MODALITIES],
        "nodeNames": [node_name(m) for m in MODALITIES],
        "loadFileTypes": [LOAD_FILE_TYPE] * len(MODALITIES),
        "thumbnailFileName": thumbnail or None,
    }


class SampleCaseJob(BackgroundJob):
    """Make the sample's files in ``cache_dir`` in the background; ``files`` (modality -> file)
    once done. The worker writes into a temporary folder beside the files, and only a complete
    case is moved into place, so a failed or cancelled run never leaves a partial file under a
    registered name. A cache that holds the files already ends the job at once, done, without a
    worker.

    Args:
        cache_dir: Sample Data's cache folder (created if needed).
        module_dir: the worker's PYTHONPATH (the module folder).
        python: the worker's Python (``PythonSlicer`` in Slicer).
        timer: the poll timer's factory (``job.TimerFactory``); none: call ``wait()``.
        callbacks: on_progress, on_finished, on_log, on_tick, as for every ``BackgroundJob``.
    """

    TITLE = "CIML Segmentation sample case"
    TEMP_PREFIX = "ciml-sample-"
    POLL_MS = 200

    def __init__(self, cache_dir, module_dir: str = MODULE_DIR, python: Optional[str] = None,
                 timer: Optional[TimerFactory] = None, **callbacks):
        super().__init__(str(module_dir), python, timer, **callbacks)
        self.cache_dir = Path(cache_dir)
        self.files: Dict[str, Path] = {}
        self._written = 0

    def start(self) -> "SampleCaseJob":
        if self.status == "new" and not missing_files(self.cache_dir):
            self.files = cached_files(self.cache_dir)
            self._end("done", "")  # nothing to make: finished before start() returns
            return self
        return super().start()

    def _temp_parent(self) -> str:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SampleCaseError(f"cannot write the sample case into {self.cache_dir}: "
                                  f"{exc.strerror or exc}") from None
        if not os.access(self.cache_dir, os.W_OK):
            raise SampleCaseError(f"cannot write the sample case into {self.cache_dir}: permission denied")
        return str(self.cache_dir)

    def _prepare(self, folder: str) -> List[str]:
        return generate_command(self.python, folder)

    def _log_progress(self, lines: List[str]) -> List[Dict]:
        events = progress_events(lines, self._written)
        self._written += len(events)
        return events

    def _finish(self, folder: str) -> None:
        made = {m: Path(folder) / CASE_ID / f"{CASE_ID}_{m}.nii.gz" for m in MODALITIES}
        absent = [str(path) for path in made.values() if not path.is_file()]
        if absent:
            raise SampleCaseError(f"the worker did not write {', '.join(absent)}")
        files = cached_files(self.cache_dir)
        for modality, path in made.items():
            os.replace(path, files[modality])
        self.files = files


def prepare_case(cache_dir, python: str, module_dir, timeout_s: float = GENERATE_TIMEOUT_S) -> Dict[str, Path]:
    """Make sure the sample's files are in ``cache_dir``, waiting for ``SampleCaseJob`` (scripts,
    the self-test; the Sample Data button runs the job in the background instead). Returns
    modality -> file; raises SampleCaseError with the worker's message when it fails or takes
    longer than ``timeout_s``."""
    job = SampleCaseJob(cache_dir, module_dir, python).start().wait(timeout_s)
    if job.running():
        job.cancel()
        raise SampleCaseError(f"the worker did not make the sample case within {timeout_s:g} s")
    if job.status != "done":
        raise SampleCaseError(job.error)
    return job.files
