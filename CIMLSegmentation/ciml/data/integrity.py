"""Is an image file whole? Voxel data shorter than the header says, and NIfTI's hidden
non-finite voxels; used by :mod:`ciml.data.io` before and after SimpleITK reads a file.

niftilib (ITK's NIfTI reader) zero-fills whatever a short .nii or .nii.gz lacks and sets NaN
and infinite floats to 0, both silently, so NIfTI files are checked on their own bytes. NRRD's
reader refuses a short file itself (its message is turned into a truncation by :func:`nrrd_truncation`); MetaIO does
too, but prints on stderr and gives ITK a misleading reason, so MetaImages are checked first.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ciml.data.errors import DataError

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
# NIfTI datatype code -> bytes per voxel (nifti1.h); only float32 and float64 can hold NaN.
_NIFTI_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8,
                1280: 8, 1536: 16, 1792: 16, 2048: 32, 2304: 4}
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
# MetaIO element type -> bytes (MET_ValueTypeSize: MET_LONG is 4 bytes there).
_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
              "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
_NRRD_SHORT_GZIP = re.compile(r"expected (\d+) bytes but received (\d+)")
_NRRD_SHORT_RAW = re.compile(r"fread got only (\d+) (\d+)-sized things, not (\d+)")


def truncated_error(source: str, expected: int, held: int, where: str = "", data: str = "voxel data") -> DataError:
    return DataError(source, f"is truncated: its header announces {expected} bytes of {data}, "
                             f"only {max(held, 0)} are there{where}")


def nrrd_truncation(text: str, source: str) -> DataError | None:
    """NRRD's own report of a short file (in ITK's exception text) as a truncation, else None."""
    short = _NRRD_SHORT_GZIP.search(text)
    if short:
        return truncated_error(source, int(short[1]), int(short[2]))
    short = _NRRD_SHORT_RAW.search(text)
    if short:
        got, size, expected = map(int, short.groups())
        return truncated_error(source, expected * size, got * size)
    return None


def looks_like_dicom(file: Path) -> bool:
    """A DICOM file by its name or its preamble (``DICM`` at byte 128); DICOMDIR is an index."""
    if not file.is_file() or file.name.startswith(".") or file.name.upper() == "DICOMDIR":
        return False
    if file.suffix.lower() in (".dcm", ".ima"):
        return True
    with open(file, "rb") as handle:
        return handle.read(132)[128:] == b"DICM"


@dataclass(frozen=True)
class NiftiLayout:
    offset: int  # where the voxels start in the (decompressed) file
    nbytes: int  # how many bytes of voxels the header announces
    dtype: np.dtype | None  # the voxel type when it is a float that can hold NaN


def _nifti_layout(head: bytes, source: str) -> NiftiLayout | None:
    """What a NIfTI-1 or NIfTI-2 single-file header announces; ``None`` if ``head`` is not one."""
    for order in "<>":
        header_size = struct.unpack(order + "i", head[:4])[0] if len(head) >= 4 else 0
        if header_size in (348, 540):
            break
    else:
        return None
    if len(head) < header_size:
        raise DataError(source, "is truncated: the file ends inside its header")
    if header_size == 348:
        if head[344:347] != b"n+1":
            return None
        datatype = struct.unpack(order + "h", head[70:72])[0]
        dim = struct.unpack(order + "8h", head[40:56])
        vox_offset = int(struct.unpack(order + "f", head[108:112])[0])
    else:
        if head[4:7] != b"n+2":
            return None
        datatype = struct.unpack(order + "h", head[12:14])[0]
        dim = struct.unpack(order + "8q", head[16:80])
        vox_offset = struct.unpack(order + "q", head[168:176])[0]
    if not 1 <= dim[0] <= 7 or datatype not in _NIFTI_BYTES:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dim[1:dim[0] + 1]], dtype=np.int64))
    dtype = np.dtype(order + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
    # niftilib reads the voxels from vox_offset, or right after the header when it is smaller.
    return NiftiLayout(max(vox_offset, header_size), voxels * _NIFTI_BYTES[datatype], dtype)


def _stream(path: Path, source: str) -> Iterator[bytes]:
    """The bytes of ``path`` as niftilib reads them: gunzipped if gzip, up to where the file ends.

    Chunks stay near a megabyte however well the data compressed (``max_length``).
    """
    with open(path, "rb") as handle:
        data = handle.read(_CHUNK)
        if data[:2] != _GZIP_MAGIC:
            while data:
                yield data
                data = handle.read(_CHUNK)
            return
        inflate = zlib.decompressobj(31)
        while True:
            try:
                out = inflate.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise DataError(source, f"has damaged compressed data ({exc})") from None
            if out:
                yield out
            if inflate.eof:  # a gzip member ended; another may follow, anything else is ignored
                data = inflate.unused_data or handle.read(_CHUNK)
                if data[:2] != _GZIP_MAGIC:
                    return
                inflate = zlib.decompressobj(31)
            elif inflate.unconsumed_tail:
                data = inflate.unconsumed_tail
            else:
                data = handle.read(_CHUNK)
                if not data:  # the file ends inside the stream
                    yield inflate.flush()
                    return


def _head(path: Path, source: str, size: int) -> bytes:
    """The first ``size`` bytes of :func:`_stream` (fewer if the file is shorter)."""
    head, chunks = b"", _stream(path, source)
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= size:
                break
    finally:
        chunks.close()
    return head[:size]


def check_nifti(path: Path, source: str) -> NiftiLayout | None:
    """Refuse a NIfTI file shorter than its header says.

    Returns:
        The file's layout when it holds NaN or infinite floats (which niftilib will hide), else
        ``None``.
    """
    layout = _nifti_layout(_head(path, source, 544), source)
    if layout is None:
        return None  # not a NIfTI file after all: ITK says what it is
    expected, nonfinite = layout.offset + layout.nbytes, 0
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    if layout.dtype is None and not compressed:
        held = path.stat().st_size
    elif layout.dtype is None and _gzip_size(path) == expected % 2**32:
        # gzip's trailer holds the stream's length; a cut file ends in other bytes (odds 2**-32),
        # so only floats (for their NaN) and a mismatch cost a decompression.
        held = expected
    else:
        held, nonfinite = _scan(path, source, layout)
    if held < expected:
        raise truncated_error(source, layout.nbytes, held - layout.offset)
    return layout if nonfinite else None


def _gzip_size(path: Path) -> int:
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little")


def _scan(path: Path, source: str, layout: NiftiLayout) -> tuple[int, int]:
    """The file's (decompressed) length, and how many of its voxels are NaN or infinite."""
    total, nonfinite, carry = 0, 0, b""
    end = layout.offset + layout.nbytes
    for chunk in _stream(path, source):
        start, total = total, total + len(chunk)
        if layout.dtype is None or total <= layout.offset or start >= end:
            continue
        part = carry + chunk[max(layout.offset - start, 0):end - start]
        whole = len(part) - len(part) % layout.dtype.itemsize  # a voxel may straddle two chunks
        values = np.frombuffer(part, layout.dtype, whole // layout.dtype.itemsize)
        nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
        carry = part[whole:]
    return total, nonfinite


def restore_nonfinite(image: sitk.Image, path: Path, source: str, layout: NiftiLayout) -> sitk.Image:
    """Put back the NaN and infinite voxels niftilib set to 0, so that one rule handles them."""
    array = sitk.GetArrayFromImage(image)
    raw = np.frombuffer(b"".join(_stream(path, source)), layout.dtype, layout.nbytes // layout.dtype.itemsize,
                        layout.offset)
    if image.GetNumberOfComponentsPerPixel() != 1 or raw.size != array.size:
        return image  # not a plain scalar volume: check_image refuses it anyway
    bad = ~np.isfinite(raw)
    array.reshape(-1)[bad] = raw[bad]
    restored = sitk.GetImageFromArray(array, isVector=False)
    restored.CopyInformation(image)
    return restored


def check_metaimage(path: Path, source: str) -> None:
    """Refuse a MetaImage (``.mha``, or ``.mhd`` and its data file) shorter than its header says."""
    fields: dict[str, str] = {}
    with open(path, "rb") as handle:
        for _ in range(200):
            key, sep, value = handle.readline(4096).decode("latin-1").partition("=")
            if not sep:
                # Not a header line: a MetaIO file that ends here, or no MetaIO file at all.
                if fields and not handle.read(1):
                    raise DataError(source, "is truncated: the file ends inside its header")
                return
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                start = handle.tell()
                break
        else:
            return
    if fields.get("BinaryData", "True").lower() != "true":
        return  # voxels written as text: no size to compare
    try:
        voxels = int(np.prod([int(v) for v in fields["DimSize"].split()], dtype=np.int64))
        voxel_bytes = _MET_BYTES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", "1"))
        compressed = fields.get("CompressedData", "False").lower() == "true"
        expected = int(fields["CompressedDataSize"]) if compressed else voxels * voxel_bytes
        skip = max(int(fields.get("HeaderSize", "0")), 0)  # -1 (voxels at the end) needs no skip
    except (KeyError, ValueError):
        return  # no CompressedDataSize, an unknown type: ITK decides
    name = fields["ElementDataFile"]
    if name == "LOCAL":
        data, skip, where = path, start, ""
    elif name.upper() == "LIST" or len(name.split()) > 1:
        return  # one file per slice: ITK decides
    else:
        data = path.parent / name
        where = f" in {data.name}"
        if not data.is_file():
            raise DataError(source, f"its data file {data} is missing")
    held = data.stat().st_size - skip
    if held < expected:
        raise truncated_error(source, expected, held, where, f"{'compressed ' if compressed else ''}voxel data")
