"""Reading and writing images with SimpleITK, keeping their physical geometry end to end.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``,
``.mhd``) and DICOM series (a folder). Every image read is checked (dimension, components,
finite voxels) and every problem is a :class:`DataError` naming the file. Writes are atomic
and refuse to overwrite unless asked.
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
from ciml.io_utils import atomic_directory, atomic_path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PathLike = Union[str, os.PathLike]
GridLike = Union[Geometry, sitk.Image]


def image_suffix(path: PathLike) -> str:
    """The image extension of ``path`` (``.nii.gz`` counts as one), or ``""`` if not an image."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def read_image(path: PathLike, dims: int | None = 3, what: str = "image") -> sitk.Image:
    """Read an image file or a DICOM series folder, and check it can be used.

    Args:
        path: an image file in a format of :data:`IMAGE_SUFFIXES`, or a folder holding one
            DICOM series.
        dims: the number of dimensions expected (``None``: any). A 3D image with one slice
            counts as 2D.
        what: how the message names the file (``image``, ``label map``, ``flair image``...).

    Raises:
        DataError: missing or unreadable file, wrong dimension, several components per voxel,
            NaN or infinite voxels.
    """
    path = Path(path)
    source = f"{what} {path}"
    if not path.exists():
        raise DataError(source, "file not found")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - SimpleITK raises RuntimeError with ITK's text
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(source, f"cannot be read as an image ({reason})") from None
    check_image(image, source, dims)
    return image


def _read_dicom_series(folder: Path) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise DataError(f"DICOM folder {folder}", "holds no DICOM series")
    if len(series) > 1:
        raise DataError(f"DICOM folder {folder}", f"holds {len(series)} DICOM series "
                        f"({', '.join(series)}); put each series in its own folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def check_image(image: sitk.Image, source: str, dims: int | None = 3) -> None:
    """Refuse an image of the wrong dimension, with several components, or non-finite voxels.

    Args:
        image: the image to check.
        source: names the image in the message (``flair image /data/x.nii.gz``).
        dims: the expected number of dimensions, or ``None`` for any.
    """
    size = image.GetSize()
    if dims is not None:
        effective = sum(1 for s in size if s > 1) if len(size) == dims else len(size)
        if len(size) != dims or effective < dims:
            shape = "x".join(map(str, size))
            raise DataError(source, f"is {effective}D (size {shape}); a {dims}D image is expected")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(source, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                                "(a colour or vector image); a single-channel image is expected")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        nan, infinite = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or infinite:
            found = " and ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (infinite, "infinite")) if n)
            raise DataError(source, f"has {found} voxel(s); every voxel must be a finite number")


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
