"""C2SP signed notes (c2sp.org/signed-note) and Ed25519 cosignatures (c2sp.org/tlog-cosignature).

A signed note is a text ending in a newline, a blank line, then signature lines
``— <key name> base64(4-byte key id || signature)``. Parsing is strict and bounded; verification
follows the spec: signatures by unknown keys are ignored, a signature by a known key that does
not verify rejects the whole note, and a note with no valid signature by a known key is rejected.

Signing goes through :class:`RawSigner` (an Ed25519 key in a token satisfies it), so this module
never sees a private key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trustfleet.audit._vkeys import (
    COSIGNATURE_V1,
    ED25519,
    ED25519_KEY_BYTES,
    KEY_ID_BYTES,
    NoteError,
    Verifier,
    b64decode_strict,
    check_name,
    key_id,
    parse_verifier_key,
    verifier_key,
)

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteError",
    "NoteSignature",
    "RawSigner",
    "Verifier",
    "cosign",
    "cosignature_time",
    "format_note",
    "key_id",
    "parse_note",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_note",
    "with_signatures",
]

MAX_NOTE_BYTES: Final = 64 * 1024
"""The largest signed note accepted (text and signatures, encoded)."""
MAX_SIGNATURES: Final = 100
"""The most signature lines a note may carry (the spec asks verifiers to accept at least 16)."""
_ED25519_SIG_BYTES: Final = 64
_TIMESTAMP_BYTES: Final = 8
_MAX_TIMESTAMP_S: Final = 2**63 - 1
_SIG_PREFIX: Final = "\u2014 "  # em dash, space


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note.

    Attributes:
        name: The key name.
        key_id: The 4-byte key id.
        signature: The bytes after the key id (for cosignature/v1: timestamp || signature).
    """

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, ``— name base64(key_id || signature)`` with its newline."""
        encoded = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_SIG_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


class RawSigner(Protocol):
    """An Ed25519 private key that signs raw messages (a token key satisfies it)."""

    def public_bytes_raw(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text does not end in a newline")
    if any(ch < " " and ch != "\n" for ch in text):
        raise NoteError("note text contains a control character")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise NoteError("signature line does not start with an em dash and a space")
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not encoded:
        raise NoteError("signature line is not '— name signature'")
    check_name(name)
    raw = b64decode_strict(encoded, what=f"signature by {name}")
    if len(raw) <= KEY_ID_BYTES:
        raise NoteError(f"signature by {name} is too short")
    return NoteSignature(name=name, key_id=raw[:KEY_ID_BYTES], signature=raw[KEY_ID_BYTES:])


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly (c2sp.org/signed-note), without verifying it.

    Args:
        data: The encoded note.

    Returns:
        The note's text and its signatures in order.

    Raises:
        NoteError: The note is too large, not UTF-8, has a control character, lacks the blank
            line or a signature, has a malformed signature line or too many signatures.
    """
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("note is not valid UTF-8") from exc
    if any(ch < " " and ch != "\n" for ch in decoded):
        raise NoteError("note contains a control character")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise NoteError("note has no signature")
    if not block.endswith("\n"):
        raise NoteError("note's last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    return Note(text=text, signatures=tuple(_parse_signature_line(line) for line in lines))


def format_note(note: Note) -> bytes:
    """Encode a note: its text, a blank line, one line per signature.

    Args:
        note: The note (at least one signature).

    Returns:
        The encoded note, which :func:`parse_note` reads back to the same note.

    Raises:
        NoteError: The text, a name or a key id is invalid, or the note is unsigned or too large.
    """
    _check_text(note.text)
    if not note.signatures:
        raise NoteError("note has no signature")
    if len(note.signatures) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    for sig in note.signatures:
        check_name(sig.name)
        if len(sig.key_id) != KEY_ID_BYTES or not sig.signature:
            raise NoteError(f"signature by {sig.name} has no 4-byte key id or no signature")
    encoded = (note.text + "\n" + "".join(sig.line() for sig in note.signatures)).encode()
    if len(encoded) > MAX_NOTE_BYTES:
        raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    return encoded


def _ed25519_sign(signer: RawSigner, message: bytes) -> tuple[bytes, bytes]:
    """(public key, signature) from the signer, both checked for size."""
    public_key = signer.public_bytes_raw()
    if len(public_key) != ED25519_KEY_BYTES:
        raise NoteError("the signer's public key is not a 32-byte Ed25519 key")
    signature = signer.sign(message)
    if len(signature) != _ED25519_SIG_BYTES:
        raise NoteError("the signer did not return a 64-byte Ed25519 signature")
    return public_key, signature


def sign_note(text: str, *, name: str, signer: RawSigner) -> Note:
    """Sign ``text`` with an Ed25519 note signature.

    Args:
        text: The note text (ends in a newline).
        name: The key name.
        signer: The Ed25519 key.

    Returns:
        The note with this one signature.

    Raises:
        NoteError: The text or the name is invalid.
    """
    _check_text(text)
    check_name(name)
    public_key, signature = _ed25519_sign(signer, text.encode("utf-8"))
    sig = NoteSignature(name=name, key_id=key_id(name, ED25519, public_key), signature=signature)
    return Note(text=text, signatures=(sig,))


def _cosigned_message(checkpoint_text: str, timestamp_s: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp_s}\n{checkpoint_text}".encode()


def cosign(
    checkpoint_text: str, *, name: str, signer: RawSigner, timestamp_s: int
) -> NoteSignature:
    """A cosignature/v1 of a checkpoint's note text (c2sp.org/tlog-cosignature).

    Args:
        checkpoint_text: The checkpoint's note text (ends in a newline, no signature lines).
        name: The cosigner's key name.
        signer: The cosigner's Ed25519 key.
        timestamp_s: The POSIX time of the cosignature (0 .. 2**63-1).

    Returns:
        The signature (type :data:`COSIGNATURE_V1`; bytes = 8-byte time || Ed25519 signature).

    Raises:
        NoteError: The text, the name or the time is invalid.
    """
    _check_text(checkpoint_text)
    check_name(name)
    if not 0 <= timestamp_s <= _MAX_TIMESTAMP_S:
        raise NoteError(f"cosignature time {timestamp_s} is out of range")
    message = _cosigned_message(checkpoint_text, timestamp_s)
    public_key, signature = _ed25519_sign(signer, message)
    return NoteSignature(
        name=name,
        key_id=key_id(name, COSIGNATURE_V1, public_key),
        signature=timestamp_s.to_bytes(_TIMESTAMP_BYTES, "big") + signature,
    )


def cosignature_time(signature: NoteSignature) -> int:
    """The POSIX time a cosignature/v1 signature carries.

    Raises:
        NoteError: The signature is not 8 + 64 bytes or its time is out of range.
    """
    if len(signature.signature) != _TIMESTAMP_BYTES + _ED25519_SIG_BYTES:
        raise NoteError(f"signature by {signature.name} is not a cosignature/v1")
    timestamp_s = int.from_bytes(signature.signature[:_TIMESTAMP_BYTES], "big")
    if timestamp_s > _MAX_TIMESTAMP_S:
        raise NoteError(f"cosignature by {signature.name} has an out-of-range time")
    return timestamp_s


def with_signatures(note: Note, extra: Sequence[NoteSignature]) -> Note:
    """The note with ``extra`` signatures added; each replaces one by the same name and key id.

    Raises:
        NoteError: The result would carry more than :data:`MAX_SIGNATURES` signatures.
    """
    merged: dict[tuple[str, bytes], NoteSignature] = {}
    for sig in note.signatures:
        merged.setdefault((sig.name, sig.key_id), sig)
    for sig in extra:
        merged.pop((sig.name, sig.key_id), None)
        merged[(sig.name, sig.key_id)] = sig
    if len(merged) > MAX_SIGNATURES:
        raise NoteError(f"note would have more than {MAX_SIGNATURES} signatures")
    return Note(text=note.text, signatures=tuple(merged.values()))


def _verifies(verifier: Verifier, text: str, signature: bytes) -> bool:
    if verifier.key_type == COSIGNATURE_V1:
        if len(signature) != _TIMESTAMP_BYTES + _ED25519_SIG_BYTES:
            return False
        timestamp_s = int.from_bytes(signature[:_TIMESTAMP_BYTES], "big")
        if timestamp_s > _MAX_TIMESTAMP_S:
            return False
        message, signature = _cosigned_message(text, timestamp_s), signature[_TIMESTAMP_BYTES:]
    else:
        message = text.encode("utf-8")
    if len(signature) != _ED25519_SIG_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _known(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        previous = known.setdefault((verifier.name, verifier.key_id), verifier)
        if previous != verifier:
            raise NoteError(f"two verifier keys share the name and key id of {verifier.name}")
    return known


def verify_note(note: Note, *, verifiers: Sequence[Verifier]) -> list[Verifier]:
    """Verify a note's signatures against known keys (c2sp.org/signed-note rules).

    Signatures by unknown keys (name or key id not both matching a verifier) are ignored.

    Args:
        note: The parsed note.
        verifiers: The known keys (Ed25519 note keys and cosignature/v1 keys).

    Returns:
        The verifiers whose signature is present and valid, in the order given.

    Raises:
        NoteError: A signature by a known key fails ("bad signature by <name>"), or no known
            key signed the note ("no signature by a known key").
    """
    known = _known(verifiers)
    valid: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not _verifies(verifier, note.text, sig.signature):
            raise NoteError(f"bad signature by {sig.name}")
        valid.add((sig.name, sig.key_id))
    if not valid:
        raise NoteError("no signature by a known key")
    return [v for key, v in known.items() if key in valid]
