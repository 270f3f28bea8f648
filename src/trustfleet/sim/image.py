"""Simulated firmware images: deterministic, filesystem-like, and related across versions.

An image is a pure function of (lineage seed, version, size). Its layout is a small
filesystem::

    0      superblock (4 KiB): magic "TFSIMG01", format, version, seed digest, table position
    4096   inode table: per file a 96-byte entry (name, offset, size, kind, CRC-32)
    ...    file data, each file starting on a 4 KiB block
    ...    free space (zeros) up to the image size

The format itself (superblock, table) is :mod:`trustfleet.ota.simimage`. The last file,
``etc/trustfleet/components.json``, lists the image's components (its binaries, with their
lineage generation and SHA-256), which ``release build`` turns into the release's SBOM.

Files are ELF-like binaries (code drawn from a shared instruction vocabulary, strings, a
symbol table), configs, data pages and high-entropy blobs (``.gz``/``.png``). Versions of one
seed form a lineage (see :mod:`trustfleet.sim._image_lineage`): a patch or minor release edits a
few percent of the files, so later files shift; a major release edits about a third of them and
moves a run of files elsewhere. This is what delta updates are measured against.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from trustfleet.errors import InvalidInput
from trustfleet.ota.sbom import Component
from trustfleet.ota.simimage import (
    BLOCK,
    COMPONENTS_FILE,
    ENTRY,
    Superblock,
    pack_entry,
    pack_superblock,
    render_components,
)
from trustfleet.ota.versions import parse_version
from trustfleet.sim._image_content import generate, rng_for, vocabulary
from trustfleet.sim._image_lineage import FileRecipe, StepKind, apply_step, initial_files

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_LINEAGE_STEPS",
    "MIN_IMAGE_BYTES",
    "ImageInfo",
    "build_image",
    "parse_size",
]

MIN_IMAGE_BYTES = 64 * 1024
"""The smallest image :func:`build_image` makes."""
MAX_IMAGE_BYTES = 1 << 30
"""The largest image :func:`build_image` makes (1 GiB)."""
MAX_LINEAGE_STEPS = 4096
"""At most this many release steps (major + minor + patch numbers) from the lineage root."""

_SIZE = re.compile(r"\s*([0-9]{1,13})\s*(B|KiB|MiB|GiB|K|M|G)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}
_UNITS |= {"g": 1 << 30, "gib": 1 << 30}
_RELOC_WINDOW = 256 * 1024


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`build_image` wrote."""

    path: Path
    version: str
    seed: str
    length: int
    sha256: str
    files: int


def parse_size(text: str) -> int:
    """Parse an image size: ``1048576``, ``4MiB``, ``64MiB``, ``512KiB``, ``1GiB`` (binary units).

    Raises:
        InvalidInput: Not a size, or outside ``MIN_IMAGE_BYTES``..``MAX_IMAGE_BYTES``
            (code ``sim.image.size``).
    """
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(
            f"'{str(text)[:40]}' is not a size",
            hint="give bytes or a binary unit, e.g. 1048576, 4MiB or 64MiB",
            code="sim.image.size",
        )
    size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    _check_size(size)
    return size


def _check_size(size: int) -> None:
    if not MIN_IMAGE_BYTES <= size <= MAX_IMAGE_BYTES:
        raise InvalidInput(
            f"image size {size} bytes is out of range",
            hint=f"use {MIN_IMAGE_BYTES // 1024} KiB to {MAX_IMAGE_BYTES >> 20} MiB",
            code="sim.image.size",
        )


def _steps(version: str) -> list[tuple[StepKind, str]]:
    major, minor, patch = parse_version(version)
    if major + minor + patch > MAX_LINEAGE_STEPS:
        raise InvalidInput(
            f"version {version} is more than {MAX_LINEAGE_STEPS} releases from the lineage root",
            hint="use smaller version numbers for simulated images",
            code="sim.image.version_too_far",
        )
    steps: list[tuple[StepKind, str]] = [("major", f"{m}.0.0") for m in range(1, major + 1)]
    steps += [("minor", f"{major}.{n}.0") for n in range(1, minor + 1)]
    steps += [("patch", f"{major}.{minor}.{p}") for p in range(1, patch + 1)]
    return steps


def _recipes(*, version: str, size_bytes: int, seed: str) -> list[FileRecipe]:
    """The file recipes of an image version (cheap: no bytes are generated)."""
    files = initial_files(seed=seed, image_size=size_bytes)
    for kind, step_version in _steps(version):
        files = apply_step(files, kind=kind, seed=seed, version=step_version, image_size=size_bytes)
    return files


def _relocate(data: bytearray, *, start: int, delta: int, seed: str) -> None:
    """Fix up 4-byte 'addresses' after an edit that moved code, as a linker would."""
    rng = rng_for(f"{seed}/reloc")
    pos = start + rng.randrange(16, 512)
    end = min(len(data) - 4, start + _RELOC_WINDOW)
    while pos < end:
        word = int.from_bytes(data[pos : pos + 4], "little")
        data[pos : pos + 4] = ((word + delta) & 0xFFFFFFFF).to_bytes(4, "little")
        pos += rng.randrange(256, 2048)


def _file_bytes(recipe: FileRecipe, *, seed: str) -> bytes:
    """The content of one file: its base content with its edits applied in order."""
    vocab = vocabulary(seed)
    data = bytearray(generate(recipe.kind, size=recipe.base_size, seed=recipe.seed, vocab=vocab))
    for edit in recipe.edits:
        piece = generate(recipe.kind, size=edit.new_len, seed=edit.seed, vocab=vocab)
        data[edit.pos : edit.pos + edit.old_len] = piece
        if edit.relocate:
            _relocate(
                data,
                start=edit.pos + edit.new_len,
                delta=edit.new_len - edit.old_len,
                seed=edit.seed,
            )
    return bytes(data)


def _too_small(version: str, needed: int, size_bytes: int) -> InvalidInput:
    return InvalidInput(
        f"version {version} needs {needed} bytes, more than the image size {size_bytes}",
        hint="build a larger image (e.g. --size 64MiB)",
        code="sim.image.too_small",
    )


def _blocks(size: int) -> int:
    return -(-max(1, size) // BLOCK) * BLOCK


def _layout(files: list[FileRecipe], *, size_bytes: int, version: str) -> tuple[list[int], int]:
    """Offsets of the files, and where the component list goes (after them)."""
    table_end = BLOCK + (len(files) + 1) * ENTRY.size
    offset = _blocks(table_end)
    offsets = []
    for recipe in files:
        offsets.append(offset)
        offset += _blocks(recipe.size)
    if offset > size_bytes:
        raise _too_small(version, offset, size_bytes)
    return offsets, offset


def _origin(recipe: FileRecipe, *, seed: str) -> str:
    """The version whose release step created (or rebuilt) a file: its lineage generation."""
    step = recipe.seed.removeprefix(f"{seed}/").split("/", 1)[0]
    return "0.0.0" if step == "root" else step


def _component(recipe: FileRecipe, content: bytes, *, seed: str) -> Component:
    name = recipe.name.rsplit("/", 1)[-1]
    version = f"{_origin(recipe, seed=seed)}-p{len(recipe.edits)}"
    return Component(
        name=name,
        version=version,
        purl=f"pkg:generic/{name}@{version}",
        sha256=hashlib.sha256(content).hexdigest(),
    )


def _write_files(
    fh: BinaryIO, files: list[FileRecipe], offsets: list[int], *, seed: str
) -> tuple[list[bytes], list[Component]]:
    entries, components = [], []
    for recipe, offset in zip(files, offsets, strict=True):
        content = _file_bytes(recipe, seed=seed)
        fh.seek(offset)
        fh.write(content)
        entries.append(
            pack_entry(name=recipe.name, offset=offset, content=content, kind=recipe.kind)
        )
        if recipe.kind == "bin":
            components.append(_component(recipe, content, seed=seed))
    return entries, components


def _write_image(
    fh: BinaryIO,
    files: list[FileRecipe],
    offsets: list[int],
    *,
    end: int,
    version: str,
    seed: str,
    size_bytes: int,
) -> None:
    entries, components = _write_files(fh, files, offsets, seed=seed)
    listing = render_components(components)
    if end + len(listing) > size_bytes:
        raise _too_small(version, end + len(listing), size_bytes)
    fh.seek(end)
    fh.write(listing)
    entries.append(pack_entry(name=COMPONENTS_FILE, offset=end, content=listing, kind="cfg"))
    fh.truncate(size_bytes)
    superblock = Superblock(
        version=version,
        seed_digest=hashlib.sha256(seed.encode()).digest()[:16],
        files=len(entries),
        table_offset=BLOCK,
        table_bytes=len(entries) * ENTRY.size,
        data_offset=offsets[0] if offsets else end,
        size=size_bytes,
    )
    fh.seek(0)
    fh.write(pack_superblock(superblock))
    fh.seek(BLOCK)
    fh.write(b"".join(entries))
    fh.flush()
    os.fsync(fh.fileno())


def build_image(out: Path, *, version: str, size_bytes: int, seed: str = "sim-v1") -> ImageInfo:
    """Write the simulated firmware image of ``version`` in lineage ``seed`` to ``out``.

    Args:
        out: The file to write (replaced atomically).
        version: ``MAJOR.MINOR.PATCH``; the image derives from the lineage root by one
            change script per release step.
        size_bytes: The image size (free space is zeros).
        seed: The lineage; images of one seed and size are related across versions.

    Returns:
        The path, length and SHA-256 of the image.

    Raises:
        InvalidInput: Bad version or size, or the version's files do not fit.
    """
    _check_size(size_bytes)
    files = _recipes(version=version, size_bytes=size_bytes, seed=seed)
    offsets, end = _layout(files, size_bytes=size_bytes, version=version)
    tmp = out.with_name(f".{out.name}.part")
    try:
        with tmp.open("wb") as fh:
            _write_image(
                fh, files, offsets, end=end, version=version, seed=seed, size_bytes=size_bytes
            )
        digest = hashlib.sha256()
        with tmp.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        tmp.replace(out)
    except InvalidInput:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(
            f"cannot write the image {out}: {exc.strerror}",
            hint="check that the directory exists and is writable",
            code="sim.image.write",
        ) from exc
    return ImageInfo(
        path=out,
        version=version,
        seed=seed,
        length=size_bytes,
        sha256=digest.hexdigest(),
        files=len(files) + 1,
    )
