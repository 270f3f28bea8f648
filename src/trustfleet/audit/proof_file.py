"""Offline inclusion proofs as C2SP ``tlog-proof`` files (``.tlog-proof``).

::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's bytes>
    index 41
    <base64 proof hash>
    ...
    <blank line>
    <the signed checkpoint note, with its cosignatures>

TrustFleet puts the entry itself in ``extra`` (the spec leaves its meaning to the
application), so one file proves one event to anyone who holds the log's verifier key.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from trustfleet.errors import InvalidInput

__all__ = ["MAX_PROOF_FILE_BYTES", "PROOF_HEADER", "ProofFileError", "TlogProof"]

PROOF_HEADER: Final = "c2sp.org/tlog-proof@v1"
MAX_PROOF_FILE_BYTES: Final = 256 * 1024
_MAX_HASHES: Final = 64  # a tree of 2^63 entries needs 63


class ProofFileError(InvalidInput):
    """Bytes that are not a tlog-proof file."""


def _b64(text: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ProofFileError(f"tlog-proof: {what} is not base64") from None


@dataclass(frozen=True, kw_only=True)
class TlogProof:
    """An inclusion proof with its checkpoint.

    Attributes:
        index: The entry's leaf index (entry id - 1).
        hashes: The RFC 9162 inclusion proof.
        note: The signed checkpoint the proof leads to.
        extra: Application data (TrustFleet: the entry's bytes), if any.
    """

    index: int
    hashes: tuple[bytes, ...]
    note: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """The file's bytes."""
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.hashes)
        return ("\n".join(lines) + "\n\n").encode("utf-8") + self.note

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        """Parse a tlog-proof file (strict, bounded).

        Raises:
            ProofFileError: The file is malformed (the reason names the line).
        """
        if len(data) > MAX_PROOF_FILE_BYTES:
            raise ProofFileError(f"tlog-proof is {len(data)} bytes, over {MAX_PROOF_FILE_BYTES}")
        head, sep, note = data.partition(b"\n\n")
        if not sep or not note:
            raise ProofFileError("tlog-proof has no blank line before its checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise ProofFileError("tlog-proof header is not ASCII") from None
        if lines[0] != PROOF_HEADER:
            raise ProofFileError(f"tlog-proof must start with {PROOF_HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _b64(rest.pop(0)[len("extra ") :], what="extra")
        if not rest or not rest[0].startswith("index "):
            raise ProofFileError("tlog-proof has no 'index N' line")
        digits = rest.pop(0)[len("index ") :]
        if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0") or len(digits) > 19:
            raise ProofFileError(f"tlog-proof index {digits!r} is not a decimal number")
        if len(rest) > _MAX_HASHES:
            raise ProofFileError(f"tlog-proof has {len(rest)} hashes, more than {_MAX_HASHES}")
        hashes = tuple(_b64(line, what=f"proof hash {i}") for i, line in enumerate(rest))
        if any(len(h) != 32 for h in hashes):
            raise ProofFileError("tlog-proof hashes must be 32 bytes each")
        return cls(index=int(digits), hashes=hashes, note=note, extra=extra)
