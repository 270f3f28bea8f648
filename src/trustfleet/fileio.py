"""Crash-safe file writes: a temporary file, fsync, rename, then fsync of the folder.

A reader (or a reboot) sees either the old bytes or the new ones, never a mix. One
implementation for the agent (slots, boot environment, TPM state), the update repository and
the broker's files. Like ``errors``, every package may use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["copy_atomic", "fsync_dir", "write_atomic"]

_COPY_CHUNK = 1024 * 1024


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``), crash-safely.

    Raises:
        OSError: The file cannot be written (nothing is left behind but the old file).
    """
    with _replacing(path, mode=mode) as out:
        out.write(data)


def copy_atomic(source: Path, dest: Path, *, mode: int = 0o644) -> None:
    """Replace ``dest`` with a copy of ``source``, crash-safely, in bounded memory.

    Raises:
        OSError: A file cannot be read or written.
    """
    with source.open("rb") as src, _replacing(dest, mode=mode) as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


@contextlib.contextmanager
def _replacing(path: Path, *, mode: int) -> Iterator[BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
