"""The sample case in Slicer's Sample Data module: one click loads a BraTS-like case (four MRI
volumes) that the built-in model segments.

Registered on ``startupCompleted()`` (as Slicer's module template does) with
``SampleDataLogic.registerCustomSampleDataSource``, whose arguments are the same at every Slicer
from 5.8 to 5.13. There is no file to download, so the source has a ``customDownloader``, which
Sample Data calls when its button is clicked (and whose return value it ignores): when the case
is not cached yet, it starts ``samplecase.SampleCaseJob`` in the background with a progress
dialog that does not block Slicer and has Cancel, and once the job is done lets Sample Data load
the cached files with their node names. Scripts and the self-test call ``loadSampleCase()``,
which waits. Slicer-only: imports slicer and qt at the top; the names, the making and the
progress texts are in the plain ``samplecase`` and ``progress``.
"""

import logging
from typing import Dict, Optional

import qt
import slicer
from slicer.i18n import tr as _
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from .. import samplecase
from ..process import python_executable
from ..progress import elapsed_text, progress_percent, status_text
from .timer import pollTimer

_making: Optional[samplecase.SampleCaseJob] = None  # the case being made: one job at a time


def cacheFolder() -> str:
    """Where Sample Data keeps its downloads (Application settings > Cache)."""
    return slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()


def registerSampleData() -> None:
    """Add the sample case to the Sample Data module (in its own category)."""
    # Lazy: SampleData is another scripted module, importable only once Slicer has loaded its
    # modules (hence startupCompleted), and a user may have disabled it.
    try:
        import SampleData
    except ImportError:
        logging.info("CIML Segmentation: the Sample Data module is not loaded; no sample case offered")
        return
    logic = SampleData.SampleDataLogic
    if any(source.sampleName == samplecase.SAMPLE_NAME
           for source in logic.sampleDataSourcesByCategory(samplecase.CATEGORY)):
        return  # already there (Sample Data tells sources apart by text, which a reload changes)
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer 5.12 and newer: a translatable title
        logic.registerCustomSampleDataCategory(samplecase.CATEGORY, _("CIML Segmentation"))
    logic.registerCustomSampleDataSource(customDownloader=_onSampleButton,
                                         **samplecase.source_arguments(cacheFolder(), samplecase.THUMBNAIL))


def loadSampleCase() -> Dict[str, object]:
    """Generate the sample case if it is not cached yet, waiting for the worker (scripts, the
    self-test), and load it: modality -> volume node. Raises samplecase.SampleCaseError, with a
    message for the user, when that fails."""
    with WaitCursor():
        samplecase.prepare_case(cacheFolder(), python_executable(), samplecase.MODULE_DIR)
        return _loadCached()


def _loadCached() -> Dict[str, object]:
    """Sample Data loads the cached files under their node names: modality -> volume node."""
    try:
        # Lazy, as above: called only after startup.
        import SampleData
    except ImportError:
        raise samplecase.SampleCaseError("the Sample Data module is not loaded in this Slicer") from None
    registerSampleData()  # does nothing when the source is registered already
    logic = SampleData.SampleDataLogic()
    nodes = logic.downloadFromSource(logic.sourceForSampleName(samplecase.SAMPLE_NAME))
    volumes = [n for n in nodes if hasattr(n, "IsA") and n.IsA("vtkMRMLScalarVolumeNode")]
    if len(volumes) != len(samplecase.MODALITIES):
        raise samplecase.SampleCaseError(
            f"Sample Data loaded {len(volumes)} of the {len(samplecase.MODALITIES)} volumes from {cacheFolder()}")
    return dict(zip(samplecase.MODALITIES, volumes))


def _showFailure(reason) -> None:
    slicer.util.errorDisplay(_("The CIML Segmentation sample case could not be loaded: {reason}").format(
        reason=reason), _("Sample data"))


def _loadOrShowFailure() -> None:
    try:
        _loadCached()
    except samplecase.SampleCaseError as exc:
        _showFailure(exc)


def _onSampleButton(source) -> None:
    """Sample Data's customDownloader: called with the source when its button is clicked. A
    cached case loads at once; otherwise the worker makes it in the background (a second click
    meanwhile only brings its progress dialog forward)."""
    global _making
    if _making is not None and _making.running():
        _making.dialog.raise_()
        return
    if not samplecase.missing_files(cacheFolder()):
        _loadOrShowFailure()
        return
    # Non-modal, and shown from the start with a busy bar: the worker says how far it is only
    # when a case is written. Closed by the job's end, never by reaching 100 %.
    making = _("Making the CIML Segmentation sample case...")
    dialog = slicer.util.createProgressDialog(value=0, maximum=0, windowTitle=_("Sample data"), labelText=making,
                                              windowModality=qt.Qt.NonModal, autoClose=False, autoReset=False)

    def onProgress(event):
        dialog.maximum = 100
        dialog.value = progress_percent(event)
        dialog.labelText = status_text(event, _)

    def onTick(job):
        if dialog.maximum == 0:  # no progress event yet
            dialog.labelText = making + " " + elapsed_text(job.elapsed, _)

    def onFinished(job):
        dialog.hide()  # hide, not close: closing a QProgressDialog emits canceled()
        dialog.deleteLater()
        if job.status == "done":
            _loadOrShowFailure()
        elif job.status == "failed":
            logging.warning("CIML Segmentation: the sample case could not be made: %s", job.error)
            _showFailure(job.error)
        else:
            slicer.util.showStatusMessage(job.outcome_text(_), 3000)

    job = samplecase.SampleCaseJob(cacheFolder(), python=python_executable(), timer=pollTimer,
                                   on_progress=onProgress, on_tick=onTick, on_finished=onFinished)
    job.dialog = dialog
    dialog.connect("canceled()", job.cancel)  # Cancel ends the worker's whole tree
    _making = job.start()  # a worker that cannot start has called onFinished already
