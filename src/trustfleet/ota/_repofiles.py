"""The TUF repository's files on disk: lock, atomic writes, hashed target files.

Layout (docs/ota.md)::

    <repo>/ (0700)                       private: only the service's user may enter it
    <repo>/.lock (0600)                  writers hold an exclusive flock on it, waiting at
                                         most ``lock_timeout_s`` (then Unavailable)
    <repo>/metadata/N.root.json          every root version
    <repo>/metadata/V.targets.json, V.snapshot.json
    <repo>/metadata/timestamp.json       the only unversioned file, written last
    <repo>/targets/<dir>/<sha256>.<name> hashed target names (consistent snapshots)

Every file is written to a temporary name in its folder, fsynced and renamed, so a reader sees
either the old or the new file. Metadata of one change is written timestamp last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from trustfleet.errors import Conflict, InvalidInput, NotFound, Unavailable
from trustfleet.fileio import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    copy_atomic,
    make_dirs,
    write_atomic,
)

__all__ = ["DEFAULT_LOCK_TIMEOUT_S", "RepoFiles", "hash_file"]

_ROOT_NAME = re.compile(r"([1-9][0-9]{0,8})\.root\.json")
_CHUNK = 1024 * 1024
DEFAULT_LOCK_TIMEOUT_S = 30.0
"""How long a writer waits for the repository lock by default (``[ota] lock_timeout_s``)."""
_LOCK_POLL_S = 0.05


def hash_file(path: Path, *, max_bytes: int) -> tuple[int, str]:
    """Length and SHA-256 (hex) of a file, refusing files larger than ``max_bytes``.

    Raises:
        NotFound: The file does not exist.
        InvalidInput: It is not a regular file or is too large (code ``ota.image.too_large``).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise NotFound(
            f"no file at {path}", hint="check the path", code="ota.file.missing"
        ) from exc
    if not path.is_file():
        raise InvalidInput(
            f"{path} is not a regular file",
            hint="name the image file itself, not a directory or device",
            code="ota.file.not_regular",
        )
    if size > max_bytes:
        raise InvalidInput(
            f"{path} is {size} bytes, above the limit of {max_bytes}",
            hint="raise [ota] max_image_bytes if this image is right",
            code="ota.image.too_large",
        )
    digest = hashlib.sha256()
    length = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            length += len(chunk)
            if length > max_bytes:
                raise InvalidInput(
                    f"{path} grew past {max_bytes} bytes", code="ota.image.too_large"
                )
            digest.update(chunk)
    return length, digest.hexdigest()


class RepoFiles:
    """The files of one repository folder."""

    def __init__(self, root: Path, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.root = root
        self.metadata_dir = root / "metadata"
        self.targets_dir = root / "targets"
        self.lock_timeout_s = lock_timeout_s

    def exists(self) -> bool:
        """Whether a repository was created here (a ``1.root.json`` exists)."""
        return (self.metadata_dir / "1.root.json").is_file()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' exclusive lock, waiting at most ``lock_timeout_s`` for it.

        The lock file is private (0600, in the repository folder, 0700), so no other local
        user can take it and stall the timestamp refresh.

        Raises:
            Unavailable: Another process held the lock for ``lock_timeout_s``
                (code ``ota.repo.locked``).
        """
        fd = self._open_lock()
        try:
            self._acquire(fd)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open_lock(self) -> int:
        if not self.root.is_dir():  # (an operator may link it to another volume)
            make_dirs(self.root, mode=PRIVATE_DIR_MODE)
        if self.root.stat().st_mode & 0o077:
            os.chmod(self.root, PRIVATE_DIR_MODE)  # a repository made before the folder was private
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.root / ".lock", flags, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)
        return fd

    def _acquire(self, fd: int) -> None:
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"the OTA repository {self.root} stayed locked by another writer "
                    f"for {self.lock_timeout_s:g} s",
                    hint="retry when the other command has finished; "
                    "raise [ota] lock_timeout_s if it is a long publish",
                    code="ota.repo.locked",
                )
            time.sleep(_LOCK_POLL_S)

    def read_metadata(self, name: str) -> bytes:
        """The bytes of ``metadata/<name>``.

        Raises:
            NotFound: No such file (code ``ota.repo.missing``).
        """
        try:
            return (self.metadata_dir / name).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(
                f"the OTA repository has no {name}",
                hint="create it with 'trustfleet ota init'",
                code="ota.repo.missing",
            ) from exc

    def root_versions(self) -> list[int]:
        """The versions of the root files present, ascending."""
        if not self.metadata_dir.is_dir():
            return []
        found = (_ROOT_NAME.fullmatch(p.name) for p in self.metadata_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m is not None)

    def latest_root(self) -> bytes:
        """The bytes of the newest root version.

        Raises:
            NotFound: The repository has no root (code ``ota.repo.missing``).
        """
        versions = self.root_versions()
        return self.read_metadata(f"{versions[-1] if versions else 1}.root.json")

    def write_metadata(self, files: Mapping[str, bytes]) -> None:
        """Write metadata files, ``timestamp.json`` last; versioned files are never replaced.

        Raises:
            Conflict: A versioned file exists already (code ``ota.repo.version_exists``).
        """
        ordered = sorted(files, key=lambda name: name == "timestamp.json")
        for name in ordered:
            if name != "timestamp.json" and (self.metadata_dir / name).exists():
                raise Conflict(
                    f"metadata/{name} exists already",
                    hint="another writer changed the repository; retry",
                    code="ota.repo.version_exists",
                )
        for name in ordered:
            write_atomic(self.metadata_dir / name, files[name])

    def target_file(self, target_path: str, sha256: str) -> Path:
        """Where the hashed copy of a target lives: ``targets/<dir>/<sha256>.<name>``."""
        directory, _, name = target_path.rpartition("/")
        return self.targets_dir / directory / f"{sha256}.{name}"

    def put_target(self, target_path: str, *, sha256: str, source: Path | bytes) -> Path:
        """Store a target under its hashed name (nothing happens if it is there already).

        Returns:
            The path of the stored file.
        """
        dest = self.target_file(target_path, sha256)
        if dest.is_file():
            return dest
        if isinstance(source, bytes):
            write_atomic(dest, source)
            return dest
        copy_atomic(source, dest)
        return dest
