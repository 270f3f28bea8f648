"""Crash-safe file writes with explicit modes, and the checks of files we trust.

A reader (or a reboot) sees either the old bytes or the new ones, never a mix: a temporary
file, fsync, rename, then fsync of the folder. One implementation for the agent (slots, boot
environment, TPM state), the update repository and the broker's files. Like ``errors``, every
package may use it.

Every file and folder written here gets an explicit mode, whatever the process umask
(docs/architecture.md, "A server home"), and no output follows a symbolic link: a rename
replaces a link instead of writing through it, and new files are opened ``O_NOFOLLOW``.
:func:`check_trusted` is what the server and the agent run on their configuration, home and
PKCS#11 module before they use them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from trustfleet.errors import Config

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "check_trusted",
    "copy_atomic",
    "fsync_dir",
    "make_dirs",
    "read_bounded",
    "removed_on_failure",
    "sync_filesystem",
    "write_atomic",
    "write_new",
]

FILE_MODE = 0o644
"""Public files: certificates, configuration, metadata."""
PRIVATE_FILE_MODE = 0o600
"""Secrets and anything only the owner may read (PINs, keys, staged firmware, locks)."""
DIR_MODE = 0o755
"""Public folders."""
PRIVATE_DIR_MODE = 0o700
"""Folders only the owner may enter."""

_COPY_CHUNK = 1024 * 1024
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if os.name == "posix" else None


def read_bounded(path: Path, *, max_bytes: int) -> bytes | None:
    """The bytes of the file at ``path``, or None when it holds more than ``max_bytes``.

    Reads at most ``max_bytes + 1`` bytes, whatever the file's size (or a FIFO) claims.

    Raises:
        OSError: The file cannot be opened or read (the caller says which file it was).
    """
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


@contextlib.contextmanager
def removed_on_failure(folder: Path, *, created: bool) -> Iterator[None]:
    """Leave nothing of a half-made ``folder`` when the block fails (a home being created).

    ``created``: the caller made ``folder`` (it is removed); otherwise it was an empty folder
    the caller was given (it is emptied again).
    """
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for child in folder.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise


def sync_filesystem(path: Path) -> None:
    """Flush every written file of the filesystem holding ``path`` to disk (Linux ``syncfs``).

    One call makes many files written with ``write_atomic(..., sync=False)`` durable at once,
    without ``sync(2)``'s flush of every other filesystem of the machine. Where ``syncfs`` is
    missing (not glibc), falls back to ``os.sync``.
    """
    syncfs = getattr(_LIBC, "syncfs", None) if _LIBC is not None else None
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, mode: int = DIR_MODE) -> Path:
    """Create ``path`` and its missing parents, each with exactly ``mode`` (not the umask's).

    An existing folder keeps its mode; an existing symbolic link or non-folder is refused.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` or a parent exists and is not a folder (or is a link).
        OSError: A folder cannot be created.
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:  # another process made it meanwhile: its mode stays
            continue
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, mode)  # mkdir's mode went through the umask
        finally:
            os.close(fd)
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    return path


def write_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``), crash-safely.

    A symbolic link at ``path`` is replaced, never written through. Missing parent folders are
    created with mode 0755. ``sync=False`` skips the fsyncs (readers still see the old or the
    new file, never a part): for many files made durable at once afterwards
    (:func:`sync_filesystem`).

    Raises:
        OSError: The file cannot be written (nothing is left behind but the old file).
    """
    with _replacing(path, mode=mode, sync=sync) as out:
        out.write(data)


def copy_atomic(source: Path, dest: Path, *, mode: int = FILE_MODE) -> None:
    """Replace ``dest`` with a copy of ``source``, crash-safely, in bounded memory.

    Raises:
        OSError: A file cannot be read or written.
    """
    with source.open("rb") as src, _replacing(dest, mode=mode) as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


def write_new(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Create ``path`` with ``data`` and mode ``mode``; never replaces or follows anything.

    Raises:
        FileExistsError: ``path`` exists (a dangling symbolic link counts).
        OSError: The file cannot be written (a partial file is removed).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


@contextlib.contextmanager
def _replacing(path: Path, *, mode: int, sync: bool = True) -> Iterator[BinaryIO]:
    if not path.parent.is_dir():  # an existing folder (an operator's link too) is used as is
        make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


def check_trusted(path: Path, *, what: str, parents: bool = False) -> None:
    """Refuse a file or folder that someone but us (or root) could change.

    ``path`` (and with ``parents`` every folder above it, and above its resolved target) must
    be owned by root or by this process's user, and not be writable by group or others; a
    folder above it may be world-writable only with the sticky bit and owned by root (``/tmp``).

    Args:
        path: The file or folder.
        what: What it is, for the message (e.g. ``"the PKCS#11 module"``).
        parents: Also check the folders above it.

    Raises:
        Config: Someone else could change it (code ``config.path.unsafe``); or it cannot be
            examined (code ``config.path.unreadable``).
    """
    absolute = Path(os.path.abspath(path))
    _check_owner_mode(absolute, what=what, where=absolute)
    if not parents:
        return
    above = [*absolute.parents]
    with contextlib.suppress(OSError):
        above += [*absolute.resolve(strict=True).parents]
    for folder in dict.fromkeys(above):
        _check_owner_mode(folder, what=what, where=absolute)


def _check_owner_mode(path: Path, *, what: str, where: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise Config(
            f"cannot examine {what} {where}: {exc.strerror}",
            hint="check that the path exists",
            code="config.path.unreadable",
        ) from exc
    sticky_root = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and info.st_uid == 0
    writable = bool(info.st_mode & 0o022) and not (path != where and sticky_root)
    foreign = info.st_uid not in (0, os.geteuid())
    if not (writable or foreign):
        return
    subject = f"{what} {where}" if path == where else f"{what} {where} (its folder {path})"
    problem = (
        f"writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
        if writable
        else f"owned by uid {info.st_uid}, neither root nor this user"
    )
    raise Config(
        f"refusing to use {subject}: it is {problem}",
        hint=f"chmod go-w {path}" if writable else f"chown root {path} (or this user)",
        code="config.path.unsafe",
    )
