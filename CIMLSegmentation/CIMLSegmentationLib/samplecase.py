"""The sample case offered in Slicer's Sample Data module: its names, files and making.

There is no hosted download: the case is the worker's synthetic BraTS-like case
(``python -m ciml sample-data --kind brats --cases 1``), which needs only numpy and SimpleITK,
both shipped with Slicer, so it works before the worker's other dependencies are installed.
It is generated once into the folder where Sample Data keeps its downloads (Slicer's remote
cache folder), under the file names registered with Sample Data; Sample Data then finds the
files there and loads them as it loads any cached download ("File already exists in cache -
reusing it", ``SampleDataLogic.downloadFile`` at every Slicer from 5.8 to 5.13).

Plain Python, tested outside Slicer with the real worker; ``slicerglue.sampledata`` registers it
with Sample Data and loads it.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List

from .process import error_message, worker_environment

CATEGORY = "CIML Segmentation"  # Sample Data's category key, shown as is before Slicer 5.12
SAMPLE_NAME = "CIMLBraTSSample"  # the button's text, and the name for SampleData.downloadSample()
KIND = "brats"
# What `ciml sample-data --kind brats --cases 1` writes (ciml.data.synthetic: case_ids and
# brats.MODALITIES; a test keeps these equal, as Slicer's process cannot import that package).
CASE_ID = "BraTS-sample-000"
MODALITIES = ("t1", "t1ce", "t2", "flair")
FILE_PREFIX = "CIMLSegmentation-"  # the remote cache folder is shared with every other sample
LOAD_FILE_TYPE = "VolumeFile"
GENERATE_TIMEOUT_S = 300
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
    return [python, "-m", "ciml", "sample-data", "--kind", KIND, "--cases", "1", "--out", str(out_dir)]


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


def prepare_case(cache_dir, python: str, module_dir) -> Dict[str, Path]:
    """Make sure the sample's files are in ``cache_dir``: run the worker once when any is
    missing, into a temporary folder beside them, then move its files into place (so a failed
    or cancelled run never leaves a partial file under a registered name). Returns modality ->
    file; raises SampleCaseError with the worker's message when it fails."""
    cache_dir = Path(cache_dir)
    if not missing_files(cache_dir):
        return cached_files(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="ciml-sample-", dir=str(cache_dir)))
    except OSError as exc:
        raise SampleCaseError(f"cannot write the sample case into {cache_dir}: {exc.strerror or exc}") from None
    try:
        try:
            done = subprocess.run(generate_command(python, work), env=worker_environment(str(module_dir)),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=GENERATE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SampleCaseError(f"the worker could not make the sample case: {exc}") from None
        if done.returncode != 0:
            raise SampleCaseError("the worker could not make the sample case: "
                                  + error_message(done.stderr, returncode=done.returncode))
        made = {m: work / CASE_ID / f"{CASE_ID}_{m}.nii.gz" for m in MODALITIES}
        absent = [str(path) for path in made.values() if not path.is_file()]
        if absent:
            raise SampleCaseError(f"the worker did not write {', '.join(absent)}")
        files = cached_files(cache_dir)
        for modality, path in made.items():
            os.replace(path, files[modality])
        return files
    finally:
        shutil.rmtree(work, ignore_errors=True)
