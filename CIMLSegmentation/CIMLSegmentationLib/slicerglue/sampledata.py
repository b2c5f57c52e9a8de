"""The sample case in Slicer's Sample Data module: one click loads a BraTS-like case (four MRI
volumes) that the built-in model segments.

Registered on ``startupCompleted()`` (as Slicer's module template does) with
``SampleDataLogic.registerCustomSampleDataSource``, whose arguments are the same at every Slicer
from 5.8 to 5.13. There is no file to download, so the source has a ``customDownloader``, which
Sample Data calls when its button is clicked: it has the worker generate the case into Sample
Data's cache folder once (``samplecase.prepare_case``), then lets Sample Data load the cached
files with their node names. Scripts and the self-test call ``loadSampleCase()``. Slicer-only:
imports slicer at the top; the names and the making are in the plain ``samplecase``.
"""

import logging
from typing import Dict

import slicer
from slicer.i18n import tr as _
from slicer.util import WaitCursor  # a class in the API index (the checker lists only functions)

from .. import samplecase
from ..process import python_executable


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
    """Generate the sample case if it is not cached yet and load it: modality -> volume node.
    Raises samplecase.SampleCaseError, with a message for the user, when that fails."""
    try:
        # Lazy, as above: called only after startup.
        import SampleData
    except ImportError:
        raise samplecase.SampleCaseError("the Sample Data module is not loaded in this Slicer") from None
    registerSampleData()  # does nothing when the source is registered already
    with WaitCursor():
        samplecase.prepare_case(cacheFolder(), python_executable(), samplecase.MODULE_DIR)
        logic = SampleData.SampleDataLogic()
        nodes = logic.downloadFromSource(logic.sourceForSampleName(samplecase.SAMPLE_NAME))
    volumes = [n for n in nodes if hasattr(n, "IsA") and n.IsA("vtkMRMLScalarVolumeNode")]
    if len(volumes) != len(samplecase.MODALITIES):
        raise samplecase.SampleCaseError(
            f"Sample Data loaded {len(volumes)} of the {len(samplecase.MODALITIES)} volumes from {cacheFolder()}")
    return dict(zip(samplecase.MODALITIES, volumes))


def _onSampleButton(source) -> None:
    """Sample Data's customDownloader: called with the source when its button is clicked."""
    try:
        loadSampleCase()
    except samplecase.SampleCaseError as exc:
        slicer.util.errorDisplay(_("The CIML Segmentation sample case could not be loaded: {reason}").format(
            reason=exc), _("Sample data"))
