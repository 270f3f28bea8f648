"""The simulated firmware image format (TFSIMG01): one pure module for its writer and readers.

The simulator (:mod:`trustfleet.sim.image`) writes images in this format and ``release build``
reads the component list the simulator wrote into them (``etc/trustfleet/components.json``),
which becomes the release's SBOM. Layout::

    0      superblock (4 KiB): magic "TFSIMG01", format, version, seed digest, file count,
           table position and length, first data block, image size
    4096   file table: per file a 96-byte entry (name, offset, size, kind, CRC-32)
    ...    file data, each file starting on a 4 KiB block

Every read is bounded: the superblock, a table of at most :data:`MAX_FILES` entries and a
component list of at most :data:`MAX_COMPONENTS_BYTES`.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from trustfleet.errors import InvalidInput
from trustfleet.ota.sbom import Component

__all__ = [
    "BLOCK",
    "COMPONENTS_FILE",
    "COMPONENTS_SCHEMA",
    "ENTRY",
    "FORMAT",
    "KIND_CODE",
    "MAGIC",
    "MAX_COMPONENTS_BYTES",
    "MAX_FILES",
    "SUPERBLOCK",
    "FileEntry",
    "Superblock",
    "pack_entry",
    "pack_superblock",
    "parse_components",
    "read_components",
    "read_table",
    "render_components",
]

MAGIC = b"TFSIMG01"
FORMAT = 1
BLOCK = 4096
SUPERBLOCK = struct.Struct("<8sI16s16sIQQQQ")
"""magic, format, version, seed digest (16 bytes), file count, table offset, table length,
first data offset, image size."""
ENTRY = struct.Struct("<64sQQB3xI4x")
"""name, offset, size, kind, CRC-32."""
KIND_CODE = {"bin": 1, "blob": 2, "cfg": 3, "data": 4}
COMPONENTS_FILE = "etc/trustfleet/components.json"
"""The file of a simulated image that lists its components (the image's SBOM source)."""
COMPONENTS_SCHEMA = "trustfleet.sim-components/1"
MAX_FILES = 65536
"""The most files a simulated image's table may list."""
MAX_COMPONENTS_BYTES = 4 << 20
"""The largest component list a reader accepts."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMPONENT_KEYS = {"name", "version", "purl", "sha256"}


@dataclass(frozen=True)
class Superblock:
    """The parsed superblock of a simulated image."""

    version: str
    seed_digest: bytes
    files: int
    table_offset: int
    table_bytes: int
    data_offset: int
    size: int


@dataclass(frozen=True)
class FileEntry:
    """One entry of the file table."""

    name: str
    offset: int
    size: int
    kind: int
    crc32: int


def pack_superblock(sb: Superblock) -> bytes:
    """The superblock's bytes (without the padding to :data:`BLOCK`)."""
    return SUPERBLOCK.pack(
        MAGIC,
        FORMAT,
        sb.version.encode(),
        sb.seed_digest,
        sb.files,
        sb.table_offset,
        sb.table_bytes,
        sb.data_offset,
        sb.size,
    )


def pack_entry(*, name: str, offset: int, content: bytes, kind: str) -> bytes:
    """The file-table entry of a file written at ``offset``."""
    return ENTRY.pack(
        name.encode()[:64], offset, len(content), KIND_CODE[kind], zlib.crc32(content)
    )


def _bad(why: str) -> InvalidInput:
    return InvalidInput(
        f"simulated image refused: {why}",
        hint="rebuild it with 'trustfleet sim image', or give a real image with --sbom FILE",
        code="ota.simimage.invalid",
    )


def _superblock(head: bytes, *, length: int) -> Superblock | None:
    if len(head) < SUPERBLOCK.size or not head.startswith(MAGIC):
        return None
    _magic, fmt, version, seed, count, table, table_bytes, data, size = SUPERBLOCK.unpack_from(head)
    if fmt != FORMAT:
        raise _bad(f"format {fmt} is not {FORMAT}")
    if size != length or not 0 <= count <= MAX_FILES or table_bytes != count * ENTRY.size:
        raise _bad("the superblock does not match the file")
    if table < SUPERBLOCK.size or table + table_bytes > length or data > length:
        raise _bad("the file table lies outside the image")
    name = version.rstrip(b"\0").decode("ascii", "replace")
    return Superblock(name, seed, count, table, table_bytes, data, size)


def read_table(fh: BinaryIO, *, length: int) -> tuple[Superblock, tuple[FileEntry, ...]] | None:
    """The superblock and file table of an open image of ``length`` bytes.

    Returns:
        None when the file is not a simulated image (another magic).

    Raises:
        InvalidInput: A corrupt superblock or table (code ``ota.simimage.invalid``).
    """
    fh.seek(0)
    sb = _superblock(fh.read(SUPERBLOCK.size), length=length)
    if sb is None:
        return None
    fh.seek(sb.table_offset)
    table = fh.read(sb.table_bytes)
    if len(table) != sb.table_bytes:
        raise _bad("the file table is truncated")
    entries = []
    for i in range(sb.files):
        name, offset, size, kind, crc = ENTRY.unpack_from(table, i * ENTRY.size)
        if kind not in KIND_CODE.values() or offset < sb.data_offset or offset + size > length:
            raise _bad(f"file table entry {i} is corrupt")
        text = name.rstrip(b"\0").decode("utf-8", "replace")
        entries.append(FileEntry(text, offset, size, kind, crc))
    return sb, tuple(entries)


def render_components(components: Sequence[Component]) -> bytes:
    """The component list's canonical JSON bytes (what the simulator writes into an image)."""
    doc = {
        "schema": COMPONENTS_SCHEMA,
        "components": [
            {"name": c.name, "version": c.version, "purl": c.purl, "sha256": c.sha256}
            for c in components
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _component(value: Any, index: int) -> Component:
    if not isinstance(value, dict) or set(value) != _COMPONENT_KEYS:
        raise _bad(f"components[{index}] is not {sorted(_COMPONENT_KEYS)}")
    texts = [value[k] for k in ("name", "version", "purl")]
    if not all(isinstance(t, str) and 0 < len(t) <= 256 for t in texts):
        raise _bad(f"components[{index}] has an empty or oversize name, version or purl")
    sha = value["sha256"]
    if not isinstance(sha, str) or _HEX64.fullmatch(sha) is None:
        raise _bad(f"components[{index}].sha256 is not 64 lowercase hex digits")
    return Component(name=texts[0], version=texts[1], purl=texts[2], sha256=sha)


def parse_components(data: bytes) -> tuple[Component, ...]:
    """Parse a component list (:func:`render_components`'s format), strictly.

    Raises:
        InvalidInput: Oversize, not JSON, another schema or a bad entry
            (code ``ota.simimage.invalid``).
    """
    if len(data) > MAX_COMPONENTS_BYTES:
        raise _bad(f"the component list is larger than {MAX_COMPONENTS_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad("the component list is not UTF-8 JSON") from exc
    if not isinstance(doc, dict) or doc.get("schema") != COMPONENTS_SCHEMA:
        raise _bad(f"the component list's schema is not '{COMPONENTS_SCHEMA}'")
    items = doc.get("components")
    if not isinstance(items, list) or set(doc) != {"schema", "components"}:
        raise _bad("the component list has no 'components' list")
    return tuple(_component(item, i) for i, item in enumerate(items))


def read_components(path: Path, *, max_bytes: int) -> tuple[Component, ...] | None:
    """The components a simulated image lists in ``etc/trustfleet/components.json``.

    Args:
        path: The image file.
        max_bytes: Larger images are refused.

    Returns:
        The components, or None when ``path`` is not a simulated image or lists no components.

    Raises:
        InvalidInput: Oversize, unreadable, or a corrupt table or component list
            (code ``ota.simimage.invalid``).
    """
    try:
        with path.open("rb") as fh:
            length = fh.seek(0, 2)
            if length > max_bytes:
                raise _bad(f"{path.name} is larger than {max_bytes} bytes")
            found = read_table(fh, length=length)
            if found is None:
                return None
            entry = next((e for e in found[1] if e.name == COMPONENTS_FILE), None)
            if entry is None:
                return None
            if entry.size > MAX_COMPONENTS_BYTES:
                raise _bad(f"the component list is larger than {MAX_COMPONENTS_BYTES} bytes")
            fh.seek(entry.offset)
            data = fh.read(entry.size)
    except OSError as exc:
        raise _bad(f"cannot read {path.name}: {exc.strerror}") from exc
    if zlib.crc32(data) != entry.crc32:
        raise _bad("the component list's CRC-32 does not match")
    return parse_components(data)
