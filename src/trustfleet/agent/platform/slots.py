"""The A/B slots: ``slots/a`` and ``slots/b``, each an ``image.bin`` and its ``release.json``.

A slot is complete only when its ``release.json`` (the TUF-verified manifest bytes) exists:
writing a slot first removes it (and makes that durable), then streams the image, fsyncs it,
and writes the manifest last, atomically. A slot cut anywhere in between has no manifest and
never boots. A partial image records which image it is part of (``.writing``, the image's
SHA-256), so an interrupted write of the same image resumes where it stopped; the whole image
is hashed again before the slot is completed, so a resumed write cannot smuggle bytes in.

On hardware a slot is a partition (``/dev/mmcblk0p2``/``p3``, or a UBI volume) written through
the same :class:`SlotWriter` interface; ``release.json`` then lives in a small metadata
partition next to the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from trustfleet.agent.platform._files import fsync_dir, write_atomic
from trustfleet.agent.platform.bootenv import Slot
from trustfleet.errors import Unavailable

__all__ = ["IMAGE_FILE", "MANIFEST_FILE", "SlotWriter", "Slots", "sha256_file"]

IMAGE_FILE = "image.bin"
MANIFEST_FILE = "release.json"
_WRITING = ".writing"
_CHUNK = 256 * 1024


def sha256_file(path: Path, *, chunk_bytes: int = _CHUNK) -> tuple[int, str]:
    """Length and SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    length = 0
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
            length += len(chunk)
    return length, digest.hexdigest()


class SlotWriter:
    """An open image of a slot being written (use it as a context manager).

    ``offset`` is where writing continues (non-zero when resuming). ``kill_at`` and
    ``on_fault`` let the simulation's fault plan stop the process at an exact byte offset.
    """

    def __init__(
        self,
        fh: BinaryIO,
        *,
        offset: int,
        kill_at: int | None = None,
        on_fault: Callable[[], None] | None = None,
    ) -> None:
        self._fh = fh
        self.offset = offset
        self._kill_at = kill_at
        self._on_fault = on_fault

    @property
    def stream(self) -> BinaryIO:
        """The file object (for writers such as ``apply_delta`` that take a stream)."""
        return self._fh

    def write(self, data: bytes) -> None:
        """Append ``data`` at ``offset``."""
        kill = self._kill_at
        if kill is not None and self.offset <= kill < self.offset + len(data):
            cut = kill - self.offset
            self._fh.write(data[:cut])
            self._fh.flush()
            self.offset += cut
            if self._on_fault is not None:
                self._on_fault()
            data = data[cut:]
        self._fh.write(data)
        self.offset += len(data)

    def close(self) -> None:
        """Flush and fsync the image."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh.closed:
            return
        if exc[0] is None:
            self.close()
        else:
            self._fh.close()


class Slots:
    """The two slots of a device folder (``DEVDIR/<id>/slots``).

    Args:
        root: The ``slots`` folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, slot: Slot) -> Path:
        """The folder of ``slot``."""
        return self.root / slot

    def image_path(self, slot: Slot) -> Path:
        """The image file of ``slot``."""
        return self.path(slot) / IMAGE_FILE

    def exists(self) -> bool:
        """Whether any slot holds a manifest (a device with a boot chain)."""
        return any((self.path(s) / MANIFEST_FILE).is_file() for s in ("a", "b"))

    def manifest_bytes(self, slot: Slot, *, max_bytes: int) -> bytes | None:
        """The slot's ``release.json`` (None if missing or larger than ``max_bytes``)."""
        try:
            with (self.path(slot) / MANIFEST_FILE).open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            return None
        return data if len(data) <= max_bytes else None

    def invalidate(self, slot: Slot) -> None:
        """Remove the slot's manifest durably: from now on the slot does not boot."""
        folder = self.path(slot)
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / MANIFEST_FILE).unlink()
        fsync_dir(folder)

    def open_image(
        self,
        slot: Slot,
        *,
        image_sha256: str,
        resume: bool,
        kill_at: int | None = None,
        on_fault: Callable[[], None] | None = None,
    ) -> SlotWriter:
        """Invalidate ``slot`` and open its image for writing.

        Args:
            slot: The (inactive) slot.
            image_sha256: The SHA-256 of the image that will be written (recorded so that an
                interrupted write of the same image can resume).
            resume: Continue a partial write of the same image instead of starting over.
            kill_at: Fault injection (simulation only): the byte offset to call ``on_fault`` at.
            on_fault: Called when ``kill_at`` is reached.

        Raises:
            Unavailable: The slot cannot be written (code ``ota.slot.io``).
        """
        self.invalidate(slot)
        folder, image = self.path(slot), self.image_path(slot)
        marker = folder / _WRITING
        try:
            fh: BinaryIO
            same = marker.is_file() and marker.read_text(encoding="ascii") == image_sha256
            if resume and same and image.is_file():
                fh = image.open("r+b")
                offset = fh.seek(0, os.SEEK_END)
            else:
                write_atomic(marker, image_sha256.encode("ascii"))
                fh = image.open("wb")
                offset = 0
        except OSError as exc:
            raise _io_error(slot, exc) from exc
        return SlotWriter(fh, offset=offset, kill_at=kill_at, on_fault=on_fault)

    def complete(self, slot: Slot, *, manifest: bytes) -> None:
        """Write the slot's manifest last (atomically): the slot is now complete.

        Raises:
            Unavailable: The slot cannot be written (code ``ota.slot.io``).
        """
        folder = self.path(slot)
        try:
            write_atomic(folder / MANIFEST_FILE, manifest)
            with contextlib.suppress(FileNotFoundError):
                (folder / _WRITING).unlink()
            fsync_dir(folder)
        except OSError as exc:
            raise _io_error(slot, exc) from exc


def _io_error(slot: Slot, exc: OSError) -> Unavailable:
    return Unavailable(
        f"cannot write slot {slot}: {exc.strerror or exc}",
        hint="check the device's storage (free space, permissions)",
        code="ota.slot.io",
    )
