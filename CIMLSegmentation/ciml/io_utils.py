"""Writing files so that nothing is ever half-written or silently overwritten.

Every output goes to a temporary sibling first and is moved into place with an atomic rename,
so a crash or a kill leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ciml.errors import CIMLError


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    With ``overwrite=False`` an existing ``path`` is refused before anything is written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise CIMLError(f"{path} already exists; choose another name or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_new(path: str | Path, text: str) -> None:
    """Write a text file that must not exist yet."""
    with atomic_path(path, overwrite=False) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it becomes ``path``.

    An existing non-empty ``path`` is refused unless ``overwrite``; when overwriting, the old
    folder is moved aside and deleted only after the new one is in place.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CIMLError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CIMLError(f"{path} already exists and is not empty; choose another folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
