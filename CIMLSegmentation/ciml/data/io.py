"""Reading and writing images with SimpleITK, keeping their physical geometry end to end.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``,
``.mhd``) and DICOM series (a folder). Every image read is checked (a file shorter than its
header says, see :mod:`ciml.data.integrity`; dimension, components, NaN or infinite voxels) and
every problem is a :class:`DataError` naming the file. Writes are atomic and refuse to
overwrite unless asked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from ciml.data.errors import DataError
from ciml.data.geometry import Geometry
from ciml.data.integrity import check_metaimage, check_nifti, looks_like_dicom, nrrd_truncation, restore_nonfinite
from ciml.io_utils import atomic_directory, atomic_path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PathLike = Union[str, os.PathLike]
GridLike = Union[Geometry, sitk.Image]

def image_suffix(path: PathLike) -> str:
    """The image extension of ``path`` (``.nii.gz`` counts as one), or ``""`` if not an image."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def read_image(path: PathLike, dims: int | None = 3, what: str = "image",
               warnings: list[str] | None = None, finite: bool = True) -> sitk.Image:
    """Read an image file or a DICOM series folder, and check it can be used.

    Args:
        path: an image file in a format of :data:`IMAGE_SUFFIXES`, or a folder holding one
            DICOM series.
        dims: the number of dimensions expected (``None``: any). A 3D image with one slice
            counts as 2D.
        what: how the message names the file (``image``, ``label map``, ``flair image``...).
        warnings: where to note NaN and infinite voxels replaced by finite values (see
            :func:`check_image`); ``None`` refuses them.
        finite: ``False`` leaves NaN and infinite voxels to the caller's :func:`check_image`
            (a 4D stack checked channel by channel).

    Raises:
        DataError: missing, truncated or unreadable file, wrong dimension, several components
            per voxel, NaN or infinite voxels (all of them, or any when ``warnings`` is
            ``None``).
    """
    path = Path(path)
    source = f"{what} {path}"
    if not path.exists():
        raise DataError(source, "file not found")
    try:
        if path.is_dir():
            image = _read_dicom_series(path, source)
        else:
            image = _read_file(path, source)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - SimpleITK raises RuntimeError with ITK's text
        raise _read_error(exc, source) from None
    if not finite:
        _check_shape(image, source, dims)
        return image
    return check_image(image, source, dims, warnings)


def _read_file(path: Path, source: str) -> sitk.Image:
    """Read one file, refusing one whose voxel data is shorter than its header says."""
    suffix = image_suffix(path)
    hidden = check_nifti(path, source) if suffix in (".nii", ".nii.gz") else None
    if suffix in (".mha", ".mhd"):
        check_metaimage(path, source)
    image = sitk.ReadImage(str(path))
    return restore_nonfinite(image, path, source, hidden) if hidden else image


def _read_error(exc: Exception, source: str) -> DataError:
    """ITK's exception as one line; NRRD's own report of a short file as a truncation."""
    text = str(exc)
    short = nrrd_truncation(text, source)
    if short is not None:
        return short
    reason = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    return DataError(source, f"cannot be read as an image ({reason})")


def _read_dicom_series(folder: Path, source: str) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise DataError(f"DICOM folder {folder}", "holds no DICOM series")
    if len(series) > 1:
        raise DataError(f"DICOM folder {folder}", f"holds {len(series)} DICOM series "
                        f"({', '.join(series)}); put each series in its own folder")
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    # GDCM leaves out a file it cannot parse (a truncated slice among them) and ITK builds the
    # volume from the others without a word: one slice short, or with a gap.
    listed = {Path(name).name for name in names}
    for file in sorted(folder.iterdir()):
        if file.name not in listed and looks_like_dicom(file):
            raise DataError(source, f"its file {file.name} cannot be read with the rest of the DICOM "
                                    "series (truncated or damaged)")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute()


def check_image(image: sitk.Image, source: str, dims: int | None = 3,
                warnings: list[str] | None = None) -> sitk.Image:
    """Refuse an image of the wrong dimension or with several components; deal with non-finite voxels.

    NaN voxels become 0 and infinite ones the image's largest or smallest finite value, with a
    sentence in ``warnings``; an image with no finite voxel at all is refused.

    Args:
        image: the image to check.
        source: names the image in messages (``flair image /data/x.nii.gz``).
        dims: the expected number of dimensions, or ``None`` for any.
        warnings: where to note replaced voxels; ``None`` refuses any NaN or infinite voxel.

    Returns:
        ``image``, or a copy with finite voxels where it had others.
    """
    _check_shape(image, source, dims)
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.floating):
        return image
    finite = np.isfinite(array)
    if finite.all():
        return image
    nan = int(np.isnan(array).sum())
    infinite = array.size - int(finite.sum()) - nan
    if not finite.any():
        raise DataError(source, f"has no finite voxel (all {array.size} are NaN or infinite)")
    if warnings is None:
        found = " and ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (infinite, "infinite")) if n)
        raise DataError(source, f"has {found} voxel(s); every voxel must be a finite number")
    low, high = float(array[finite].min()), float(array[finite].max())
    fixed = sitk.GetImageFromArray(np.nan_to_num(array, nan=0.0, posinf=high, neginf=low), isVector=False)
    fixed.CopyInformation(image)
    done = [f"{nan} NaN voxel(s) set to 0"] if nan else []
    if infinite:
        done.append(f"{infinite} infinite voxel(s) clipped to the image's finite range "
                    f"(+inf to {high:g}, -inf to {low:g})")
    warnings.append(f"{source}: {' and '.join(done)}")
    return fixed


def _check_shape(image: sitk.Image, source: str, dims: int | None) -> None:
    size = image.GetSize()
    if dims is not None:
        effective = sum(1 for s in size if s > 1) if len(size) == dims else len(size)
        if len(size) != dims or effective < dims:
            shape = "x".join(map(str, size))
            raise DataError(source, f"is {effective}D (size {shape}); a {dims}D image is expected")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(source, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                                "(a colour or vector image); a single-channel image is expected")


def image_to_array(image: sitk.Image) -> np.ndarray:
    """The voxels of an image as an array indexed ``[x, y, z]`` (SimpleITK index order)."""
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).T)


def array_to_image(array: np.ndarray, grid: GridLike) -> sitk.Image:
    """An image with the voxels of ``array`` (indexed ``[x, y, z]``) on ``grid``.

    Args:
        array: voxel values, shape ``grid.size``; bool arrays are stored as uint8.
        grid: a :class:`Geometry` or an image whose grid to use.
    """
    grid = grid if isinstance(grid, Geometry) else Geometry.of(grid)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if tuple(array.shape) != grid.size:
        raise ValueError(f"array shape {array.shape} does not match the grid size {grid.size}")
    return grid.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array.T)))


def read_array(path: PathLike, dims: int | None = 3, what: str = "image") -> tuple[np.ndarray, Geometry]:
    """Read an image as ``(array indexed [x, y, z], its Geometry)``; see :func:`read_image`."""
    image = read_image(path, dims, what)
    return image_to_array(image), Geometry.of(image)


def write_image(data: np.ndarray | sitk.Image, grid: GridLike, path: PathLike,
                overwrite: bool = False, compress: bool = True) -> Path:
    """Write an image atomically, with exactly the geometry of ``grid``.

    Args:
        data: an array indexed ``[x, y, z]`` of shape ``grid.size`` or a SimpleITK image of that
            size (its own geometry is replaced by ``grid``'s).
        grid: the grid of the output, usually the reference input (a :class:`Geometry` or an
            image).
        path: output file; its extension picks the format (:data:`IMAGE_SUFFIXES`).
        overwrite: replace an existing file; without it an existing file is refused.
        compress: compress the voxels where the format allows it.

    Returns:
        ``path``. The file appears complete or not at all: SimpleITK writes into a private
        folder (under the real file name, since it picks the format and a ``.mhd`` header's data
        file name from it) and the result is renamed into place, a header last.
    """
    path = Path(path)
    if not image_suffix(path):
        raise DataError(f"output {path}", f"unknown image extension (use one of {', '.join(IMAGE_SUFFIXES)})")
    geometry = grid if isinstance(grid, Geometry) else Geometry.of(grid)
    if isinstance(data, sitk.Image):
        image = geometry.apply_to(sitk.Image(data))
    else:
        image = array_to_image(data, geometry)
    with atomic_path(path, overwrite=overwrite) as tmp:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            staged = staging / path.name
            sitk.WriteImage(image, str(staged), compress)
            for companion in staging.iterdir():  # a .mhd header's .raw/.zraw data file
                if companion != staged:
                    target = path.parent / companion.name
                    if target.exists() and not overwrite:
                        raise DataError(f"output {target}", "already exists; choose another name")
                    os.replace(companion, target)
            os.replace(staged, tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path


def write_dicom_series(data: np.ndarray | sitk.Image, grid: GridLike, folder: PathLike,
                       modality: str = "MR", overwrite: bool = False) -> Path:
    """Write a 3D image as a DICOM series, one file per slice, into a new folder.

    The voxels are stored as int16 (DICOM's usual CT/MR pixel type), so values must be
    integers in its range. The geometry travels in the standard tags: Image Orientation
    (Patient) from the direction, Image Position (Patient) per slice, Pixel Spacing and Slice
    Thickness. The folder is written aside and renamed into place.

    Args:
        data, grid: as for :func:`write_image`.
        folder: the series folder to create.
        modality: the DICOM Modality tag (``MR``, ``CT``, ``PT``).
        overwrite: replace an existing non-empty folder.
    """

    geometry = grid if isinstance(grid, Geometry) else Geometry.of(grid)
    array = image_to_array(data) if isinstance(data, sitk.Image) else np.asarray(data)
    info = np.iinfo(np.int16)
    if not np.array_equal(array, np.round(array)) or array.min() < info.min or array.max() > info.max:
        raise DataError(f"output {folder}", "DICOM series are written as int16: values must be integers "
                        f"in [{info.min}, {info.max}]")
    image = array_to_image(array.astype(np.int16), geometry)
    uid = f"1.2.826.0.1.3680043.2.1125.{int(time.time() * 1e3)}.{os.getpid()}"
    date, clock = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    direction = geometry.direction
    orientation = "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6],
                                                   direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # so that the tags set below are the ones written
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        for z in range(image.GetDepth()):
            slice_ = image[:, :, z]
            position = image.TransformIndexToPhysicalPoint((0, 0, z))
            tags = {
                "0008|0060": modality, "0008|0020": date, "0008|0030": clock,
                "0020|000d": uid + ".1", "0020|000e": uid + ".2",
                "0008|0018": f"{uid}.3.{z + 1}", "0020|0013": str(z + 1),
                "0020|0037": orientation, "0020|0032": "\\".join(f"{v:.10g}" for v in position),
                "0018|0050": f"{geometry.spacing[2]:.10g}",
                "0028|0030": f"{geometry.spacing[1]:.10g}\\{geometry.spacing[0]:.10g}",
            }
            for tag, value in tags.items():
                slice_.SetMetaData(tag, value)
            writer.SetFileName(str(tmp / f"slice_{z:04d}.dcm"))
            writer.Execute(slice_)
    return Path(folder)
