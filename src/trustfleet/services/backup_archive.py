"""The plaintext inside a backup's envelope: folders and files, then the manifest.

Each record is a length (u32, big-endian), a JSON entry, then for a file its ``size`` bytes::

    {"type": "dir",  "path": "tokens", "mode": 448}
    {"type": "file", "path": "tokens/softhsm2.conf", "mode": 420, "size": 123}
    {"type": "manifest", "files": {"<path>": {"sha256": …, "size": …, "mode": …}}, "meta": {…}}

The manifest is the last record: restore checks every file against it and that nothing is
missing or extra. Only folders and regular files exist here: links, devices and FIFOs cannot be
written, and restore refuses a path that is absolute, has ``..``, ``.``, empty or odd
components, or comes twice, a mode with set-id bits or group/other write, and sizes or counts
over :class:`ArchiveLimits`. Extraction creates every file ``O_EXCL|O_NOFOLLOW`` below a folder
it made itself, so nothing can be written outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = ["ArchiveLimits", "ArchiveReader", "ArchiveWriter", "Restored", "check_path"]

_MAX_ENTRY_BYTES: Final = 64 * 1024
_MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024
_COMPONENT = re.compile(r"[A-Za-z0-9_@+=,-][A-Za-z0-9._@+=,-]{0,254}")
_HINT: Final = "the backup is not one 'trustfleet server backup' wrote"
_READ_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what restore accepts (an absurd archive is refused, not unpacked)."""

    max_entries: int = 1_000_000
    max_file_bytes: int = 64 << 30
    max_total_bytes: int = 256 << 30
    max_depth: int = 16


class _Sink(Protocol):
    def write(self, data: bytes) -> int: ...


def check_path(path: str, *, limits: ArchiveLimits = ArchiveLimits()) -> str:
    """``path`` if it is a safe relative path of the archive.

    Raises:
        InvalidInput: Absolute, ``..``, ``.``, empty or odd components, or too deep
            (code ``backup.entry.path``).
    """
    parts = path.split("/")
    if (
        len(path) > 1024
        or len(parts) > limits.max_depth
        or not all(_COMPONENT.fullmatch(part) and part not in (".", "..") for part in parts)
    ):
        raise InvalidInput(
            f"unsafe path in the backup: {path[:80]!r}", hint=_HINT, code="backup.entry.path"
        )
    return path


class ArchiveWriter:
    """Writes records into a plaintext sink (the :class:`EncryptingWriter`)."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._files: dict[str, dict[str, Any]] = {}
        self._paths: set[str] = set()
        self.bytes_written = 0

    def _record(self, entry: Mapping[str, Any]) -> None:
        body = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        self._sink.write(struct.pack(">I", len(body)) + body)

    def _claim(self, path: str) -> str:
        check_path(path)
        if path in self._paths:
            raise InvalidInput(f"{path} added twice to the backup", code="backup.entry.duplicate")
        self._paths.add(path)
        return path

    def add_dir(self, path: str, *, mode: int) -> None:
        """A folder (before anything inside it)."""
        self._record({"type": "dir", "path": self._claim(path), "mode": mode & 0o755})

    def add_file(self, path: str, source: BinaryIO, *, size: int, mode: int) -> None:
        """A regular file of exactly ``size`` bytes read from ``source``.

        Raises:
            InvalidInput: The file changed size while it was read (code ``backup.file.changed``).
        """
        self._record(
            {"type": "file", "path": self._claim(path), "mode": mode & 0o755, "size": size}
        )
        digest, left = hashlib.sha256(), size
        while left:
            data = source.read(min(left, _READ_CHUNK))
            if not data:
                raise InvalidInput(
                    f"{path} shrank while it was backed up", hint="take the backup again",
                    code="backup.file.changed",
                )  # fmt: skip
            digest.update(data)
            self._sink.write(data)
            left -= len(data)
            self.bytes_written += len(data)
        self._files[path] = {"sha256": digest.hexdigest(), "size": size, "mode": mode & 0o755}

    @property
    def file_count(self) -> int:
        """Files added so far."""
        return len(self._files)

    def finish(self, meta: Mapping[str, Any]) -> None:
        """The manifest, last."""
        self._record({"type": "manifest", "files": self._files, "meta": dict(meta)})


@dataclass(frozen=True)
class Restored:
    """What an archive held: its manifest's metadata and counts."""

    meta: Mapping[str, Any]
    files: int
    folders: int
    total_bytes: int


class _Chunks:
    """Exact reads over an iterator of byte chunks (the decrypted stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read_upto(self, size: int) -> bytes:
        while not self._buffer:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                return b""
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_exact(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            data = self.read_upto(left)
            if not data:
                raise VerificationFailed(
                    "the backup's contents end early", hint=_HINT, code="backup.truncated"
                )
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def at_end(self) -> bool:
        if self._buffer:
            return False
        data = self.read_upto(1)
        self._buffer += data
        return not data


@dataclass
class ArchiveReader:
    """Unpacks records into a new folder ``dest`` (made by the caller, empty)."""

    dest: Path
    limits: ArchiveLimits = ArchiveLimits()
    progress: Any = None
    _seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    _dirs: dict[str, int] = field(default_factory=dict)
    _total: int = 0

    def extract(self, chunks: Iterator[bytes]) -> Restored:
        """Unpack everything, check it against the manifest, then set the folders' modes.

        Raises:
            InvalidInput: A record breaks a rule or a bound.
            VerificationFailed: A file does not match the manifest, or the stream ends early.
        """
        stream = _Chunks(chunks)
        while True:
            entry = self._entry(stream, max_bytes=_MAX_ENTRY_BYTES)
            kind = entry.get("type")
            if kind == "manifest":
                break
            if len(self._seen) + len(self._dirs) >= self.limits.max_entries:
                raise InvalidInput(
                    "too many entries in the backup", hint=_HINT, code="backup.entry.count"
                )
            if kind == "dir":
                self._dir(entry)
            elif kind == "file":
                self._file(entry, stream)
            else:
                raise InvalidInput(
                    f"unsupported entry type {str(kind)[:20]!r} (links, devices "
                    "and FIFOs are refused)",
                    hint=_HINT,
                    code="backup.entry.type",
                )
        if not stream.at_end():
            raise VerificationFailed(
                "data after the backup's manifest", hint=_HINT, code="backup.tampered"
            )
        self._check_manifest(entry)
        for path in sorted(self._dirs, key=lambda p: -p.count("/")):
            os.chmod(self.dest / path, self._dirs[path], follow_symlinks=False)
        return Restored(
            meta=entry.get("meta") or {},
            files=len(self._seen),
            folders=len(self._dirs),
            total_bytes=self._total,
        )

    def _entry(self, stream: _Chunks, *, max_bytes: int) -> dict[str, Any]:
        (size,) = struct.unpack(">I", stream.read_exact(4))
        if size > _MAX_MANIFEST_BYTES:
            raise InvalidInput("a backup entry is too large", hint=_HINT, code="backup.entry.size")
        try:
            entry = json.loads(stream.read_exact(size))
        except ValueError as exc:
            raise InvalidInput(
                "a backup entry is not JSON", hint=_HINT, code="backup.entry"
            ) from exc
        if not isinstance(entry, dict):
            raise InvalidInput("a backup entry is not an object", hint=_HINT, code="backup.entry")
        if entry.get("type") != "manifest" and size > max_bytes:
            raise InvalidInput("a backup entry is too large", hint=_HINT, code="backup.entry.size")
        return entry

    def _mode(self, entry: Mapping[str, Any]) -> int:
        mode = entry.get("mode")
        if not isinstance(mode, int) or mode & ~0o755:
            raise InvalidInput(
                "a backup entry has an unsafe mode", hint=_HINT, code="backup.entry.mode"
            )
        return mode

    def _target(self, entry: Mapping[str, Any]) -> tuple[str, Path]:
        path = check_path(str(entry.get("path", "")), limits=self.limits)
        if path in self._seen or path in self._dirs:
            raise InvalidInput(
                f"{path} comes twice in the backup", hint=_HINT, code="backup.entry.duplicate"
            )
        parent = path.rpartition("/")[0]
        if parent and parent not in self._dirs:
            raise InvalidInput(
                f"{path} comes before its folder", hint=_HINT, code="backup.entry.order"
            )
        return path, self.dest / path

    def _dir(self, entry: Mapping[str, Any]) -> None:
        path, target = self._target(entry)
        mode = self._mode(entry)
        os.mkdir(target, 0o700)  # owner-only while unpacking; its own mode at the end
        self._dirs[path] = mode

    def _file(self, entry: Mapping[str, Any], stream: _Chunks) -> None:
        path, target = self._target(entry)
        mode, size = self._mode(entry), entry.get("size")
        if not isinstance(size, int) or not 0 <= size <= self.limits.max_file_bytes:
            raise InvalidInput(f"{path}: absurd size", hint=_HINT, code="backup.entry.size")
        self._total += size
        if self._total > self.limits.max_total_bytes:
            raise InvalidInput("the backup is too large", hint=_HINT, code="backup.entry.size")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o600)
        digest, left = hashlib.sha256(), size
        with os.fdopen(fd, "wb") as out:
            while left:
                data = stream.read_exact(min(left, _READ_CHUNK))
                digest.update(data)
                out.write(data)
                left -= len(data)
                if self.progress is not None:
                    self.progress(len(data))
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), mode)
        self._seen[path] = {"sha256": digest.hexdigest(), "size": size, "mode": mode}

    def _check_manifest(self, manifest: Mapping[str, Any]) -> None:
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise InvalidInput(
                "the backup's manifest has no file list", hint=_HINT, code="backup.manifest"
            )
        if set(files) != set(self._seen):
            extra = sorted(set(files) ^ set(self._seen))[:3]
            raise VerificationFailed(
                f"the backup's files differ from its manifest ({', '.join(extra)})",
                hint=_HINT,
                code="backup.manifest",
            )
        for path, found in self._seen.items():
            if files[path] != found:
                raise VerificationFailed(
                    f"{path} does not match the backup's manifest",
                    hint=_HINT,
                    code="backup.manifest",
                )
