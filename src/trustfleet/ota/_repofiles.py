"""The TUF repository's files on disk: lock, atomic writes, hashed target files.

Layout (docs/ota.md)::

    <repo>/.lock                         writers hold an exclusive fcntl lock on it
    <repo>/metadata/N.root.json          every root version
    <repo>/metadata/V.targets.json, V.snapshot.json
    <repo>/metadata/timestamp.json       the only unversioned file, written last
    <repo>/targets/<dir>/<sha256>.<name> hashed target names (consistent snapshots)

Every file is written to a temporary name in its folder, fsynced and renamed, so a reader sees
either the old or the new file. Metadata of one change is written timestamp last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.fileio import copy_atomic, write_atomic

__all__ = ["RepoFiles", "hash_file"]

_ROOT_NAME = re.compile(r"([1-9][0-9]{0,8})\.root\.json")
_CHUNK = 1024 * 1024


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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.metadata_dir = root / "metadata"
        self.targets_dir = root / "targets"

    def exists(self) -> bool:
        """Whether a repository was created here (a ``1.root.json`` exists)."""
        return (self.metadata_dir / "1.root.json").is_file()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' exclusive lock (blocks until other writers are done)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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
