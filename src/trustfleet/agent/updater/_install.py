"""Writing a release into the inactive slot: from a verified full image or through a delta.

The slot is invalidated first (its ``release.json`` removed) and completed last (manifest
written after the image is fsynced and its SHA-256 checked), so a slot cut anywhere in between
never boots. A full-image write resumes a partial write of the same image; the whole slot is
hashed before it is completed, and a mismatch starts the write over once.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

from trustfleet.agent.platform.bootenv import Slot
from trustfleet.agent.platform.faults import FaultPlan
from trustfleet.agent.platform.slots import Slots, SlotWriter, sha256_file
from trustfleet.errors import VerificationFailed
from trustfleet.ota.manifest import ImageRef, parse_manifest

__all__ = ["install_image_file", "slot_matches", "write_delta", "write_image"]

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024


def slot_matches(slots: Slots, slot: Slot, image: ImageRef) -> bool:
    """Whether the slot's image has the release's length and SHA-256."""
    try:
        length, digest = sha256_file(slots.image_path(slot))
    except OSError:
        return False
    return length == image.length and digest == image.sha256


def write_image(
    slots: Slots,
    slot: Slot,
    *,
    source: Path,
    image: ImageRef,
    faults: FaultPlan,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Stream the verified image file ``source`` into ``slot`` (resuming) and check it.

    Raises:
        VerificationFailed: The slot's image does not match ``image`` after a full rewrite
            (code ``ota.slot.mismatch``).
        Unavailable: The slot cannot be written (``ota.slot.io``) or an injected fault.
    """
    for resume in (True, False):
        with _open(slots, slot, image=image, resume=resume, faults=faults) as writer:
            if writer.offset:
                logger.info("resuming the write of slot %s at byte %d", slot, writer.offset)
            with source.open("rb") as src:
                src.seek(writer.offset)
                while chunk := src.read(_CHUNK):
                    writer.write(chunk)
                    if progress is not None:
                        progress(writer.offset, image.length)
        if slot_matches(slots, slot, image):
            return
        logger.warning("slot %s does not match the release after writing; starting over", slot)
    raise VerificationFailed(
        f"slot {slot} does not hold the release's image after writing it",
        hint="check the device's storage",
        code="ota.slot.mismatch",
    )


def write_delta(
    slots: Slots,
    slot: Slot,
    *,
    old_image: Path,
    delta_file: Path,
    image: ImageRef,
    faults: FaultPlan,
    max_output_bytes: int,
) -> None:
    """Rebuild the image from the active slot's image and a verified delta, into ``slot``.

    Raises:
        VerificationFailed: The delta does not apply or does not give the release's image
            (``ota.delta.*``, ``ota.slot.mismatch``).
        InvalidInput: The delta would write more than ``max_output_bytes``.
    """
    from trustfleet.ota.delta import apply_delta  # noqa: PLC0415  # zstandard: only now

    with (
        _open(slots, slot, image=image, resume=False, faults=faults) as writer,
        delta_file.open("rb") as delta,
    ):
        apply_delta(
            old_image,
            delta,
            cast(BinaryIO, _WriterStream(writer)),
            expected_length=image.length,
            max_output_bytes=max_output_bytes,
        )
    if not slot_matches(slots, slot, image):
        raise VerificationFailed(
            f"slot {slot} does not hold the release's image after applying the delta",
            hint="the full image will be used",
            code="ota.slot.mismatch",
        )


def _open(
    slots: Slots, slot: Slot, *, image: ImageRef, resume: bool, faults: FaultPlan
) -> SlotWriter:
    fault = faults.write_fault()
    if fault is None:
        return slots.open_image(slot, image_sha256=image.sha256, resume=resume)
    return slots.open_image(
        slot,
        image_sha256=image.sha256,
        resume=resume,
        kill_at=fault.offset or 0,
        on_fault=lambda: faults.act(fault),
    )


class _WriterStream(io.RawIOBase):
    """A write-only stream over a :class:`SlotWriter` (for ``apply_delta``)."""

    def __init__(self, writer: SlotWriter) -> None:
        super().__init__()
        self._writer = writer

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self._writer.write(chunk)
        return len(chunk)


def install_image_file(
    slots: Slots, slot: Slot, *, manifest: bytes, source: Path, faults: FaultPlan
) -> None:
    """The install step alone: a verified full image and its manifest into ``slot``.

    Resumes a partial write of the same image; the slot is complete (bootable) only at the
    end. The engine does the same between ``installing`` and ``installed``; tests use this to
    cut the slot write at arbitrary offsets without the network.

    Raises:
        InvalidInput: ``manifest`` is not a manifest.
        VerificationFailed: The slot does not hold the image after writing.
    """
    release = parse_manifest(manifest)
    write_image(slots, slot, source=source, image=release.image, faults=faults)
    slots.complete(slot, manifest=manifest)
