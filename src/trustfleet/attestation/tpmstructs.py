"""TPM 2.0 quote structures as the TPM marshals them (TPM 2.0 Library, Part 2).

Parsers for ``TPMS_ATTEST`` (quotes only), ``TPMT_SIGNATURE`` (ECDSA) and
``TPML_PCR_SELECTION``: big-endian, every size checked against its bound before it is used,
no trailing bytes. A parse failure is an :class:`~trustfleet.errors.InvalidInput` with code
``attestation.evidence.malformed``; an attestation structure that is not a quote (wrong magic or
type) has code ``attestation.quote.type``.

The parsed structures are ``NamedTuple``s rather than frozen dataclasses: as immutable, and
several times cheaper to make, which counts when thousands of quotes are verified per second.

The ``build_*`` functions marshal the same structures byte for byte, for tests, benchmarks and
software devices.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_DIGEST_BYTES",
    "MAX_ECC_PARAMETER_BYTES",
    "MAX_NAME_BYTES",
    "MAX_PCR_BANKS",
    "MAX_PCR_SELECT_BYTES",
    "TPM_ALG_ECDSA",
    "TPM_ALG_SHA256",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "Attest",
    "ClockInfo",
    "EcdsaSignature",
    "PcrSelection",
    "build_attest_quote",
    "build_ecdsa_signature",
    "build_pcr_selection",
    "ecdsa_signature_from_der",
    "parse_attest_quote",
    "parse_ecdsa_signature",
    "parse_pcr_selection",
    "qualified_name",
    "tpm_name",
]

TPM_GENERATED_VALUE: Final = 0xFF544347
"""``TPM_GENERATED_VALUE``: the magic of every structure the TPM signs."""
TPM_ST_ATTEST_QUOTE: Final = 0x8018
TPM_ALG_SHA256: Final = 0x000B
TPM_ALG_ECDSA: Final = 0x0018

MAX_NAME_BYTES: Final = 2 + 64
"""``sizeof(TPMU_NAME)``: a hash algorithm id and a SHA-512 digest."""
MAX_DATA_BYTES: Final = 2 + 64
"""``sizeof(TPMT_HA)``, the bound of ``TPM2B_DATA`` (the quote's ``extraData``)."""
MAX_DIGEST_BYTES: Final = 64
MAX_PCR_BANKS: Final = 16
"""``HASH_COUNT`` bound on the banks of one ``TPML_PCR_SELECTION``."""
MAX_PCR_SELECT_BYTES: Final = 4
"""``PCR_SELECT_MAX`` for TPMs with up to 32 PCRs (a 24-PCR TPM marshals 3)."""
MAX_ECC_PARAMETER_BYTES: Final = 32
"""``r`` and ``s`` of a P-256 signature."""

_MALFORMED: Final = "attestation.evidence.malformed"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">IH")
_CLOCK = struct.Struct(">QIIBQ")  # clockInfo (clock, resetCount, restartCount, safe) + firmware
_SEL_HEAD = struct.Struct(">HB")
_SIG_HEAD = struct.Struct(">HH")


class ClockInfo(NamedTuple):
    """``TPMS_CLOCK_INFO``: the TPM's clock and its reset and restart counters.

    Attributes:
        clock: Milliseconds the TPM has been powered since it was last cleared.
        reset_count: TPM resets (reboots) since it was last cleared.
        restart_count: Restarts and resumes since the last reset.
        safe: Whether the clock has not gone back since it was last reported.
    """

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


class PcrSelection(NamedTuple):
    """One ``TPMS_PCR_SELECTION``: a bank and the PCRs selected in it (ascending)."""

    hash_alg: int
    pcrs: tuple[int, ...]


class Attest(NamedTuple):
    """A parsed quote (``TPMS_ATTEST`` with type ``TPM_ST_ATTEST_QUOTE``).

    Attributes:
        qualified_signer: ``TPM2B_NAME`` of the signing key's qualified name.
        extra_data: The caller's qualifying data (the challenge nonce).
        clock_info: The TPM's clock and counters.
        firmware_version: The TPM vendor's firmware version.
        pcr_select: The banks and PCRs quoted, in the order of the digest.
        pcr_digest: Digest over the selected PCR values, concatenated in selection order.
    """

    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes


class EcdsaSignature(NamedTuple):
    """A ``TPMT_SIGNATURE`` with ``sigAlg`` ECDSA."""

    hash_alg: int
    r: int
    s: int

    def to_der(self) -> bytes:
        """The signature as DER ``Ecdsa-Sig-Value``, the form ``cryptography`` verifies."""
        return encode_dss_signature(self.r, self.s)


def _malformed(*, message: str) -> InvalidInput:
    return InvalidInput(
        message, hint="send the structure exactly as the TPM marshalled it", code=_MALFORMED
    )


def _tpm2b(data: bytes, pos: int, max_bytes: int, what: str) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise _malformed(message=f"{what}: truncated size")
    (size,) = _U16.unpack_from(data, pos)
    pos += 2
    if size > max_bytes:
        raise _malformed(message=f"{what}: size {size} over {max_bytes}")
    end = pos + size
    if end > len(data):
        raise _malformed(message=f"{what}: truncated")
    return data[pos:end], end


@functools.lru_cache(maxsize=256)
def _selected(bitmap: bytes) -> tuple[int, ...]:
    """The PCR indices set in a ``pcrSelect`` bitmap (cached: devices quote the same PCRs)."""
    bits = int.from_bytes(bitmap, "little")  # PCR n is bit n % 8 of byte n // 8
    return tuple(pcr for pcr in range(bits.bit_length()) if bits >> pcr & 1)


def _parse_selection(data: bytes, pos: int) -> tuple[tuple[PcrSelection, ...], int]:
    if pos + 4 > len(data):
        raise _malformed(message="TPML_PCR_SELECTION: truncated count")
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    if count > MAX_PCR_BANKS:
        raise _malformed(message=f"TPML_PCR_SELECTION: {count} banks, over {MAX_PCR_BANKS}")
    banks = []
    for _ in range(count):
        try:
            hash_alg, size = _SEL_HEAD.unpack_from(data, pos)
        except struct.error:
            raise _malformed(message="TPMS_PCR_SELECTION: truncated") from None
        pos += _SEL_HEAD.size
        if not 1 <= size <= MAX_PCR_SELECT_BYTES or pos + size > len(data):
            raise _malformed(message=f"TPMS_PCR_SELECTION: bad sizeofSelect {size}")
        banks.append(PcrSelection(hash_alg, _selected(data[pos : pos + size])))
        pos += size
    return tuple(banks), pos


def parse_pcr_selection(data: bytes) -> tuple[PcrSelection, ...]:
    """Parse a marshalled ``TPML_PCR_SELECTION`` (nothing may follow it).

    Args:
        data: The bytes.

    Returns:
        The banks with their selected PCRs.

    Raises:
        InvalidInput: The bytes are not one well-formed selection
            (``attestation.evidence.malformed``).
    """
    banks, pos = _parse_selection(data, 0)
    if pos < len(data):  # each read checked its own end
        raise _malformed(message="TPML_PCR_SELECTION: trailing bytes")
    return banks


def parse_attest_quote(data: bytes, *, max_bytes: int) -> Attest:
    """Parse a marshalled ``TPMS_ATTEST`` that must be a quote.

    Args:
        data: The bytes the TPM returned as ``quoted``.
        max_bytes: Bound on their length.

    Returns:
        The quote.

    Raises:
        InvalidInput: ``attestation.quote.type`` when the magic is not ``TPM_GENERATED_VALUE``
            or the type not ``TPM_ST_ATTEST_QUOTE``; ``attestation.evidence.malformed`` for
            any other defect (too long, truncated, a size over its bound, trailing bytes).
    """
    if len(data) > max_bytes:
        raise _malformed(message=f"TPMS_ATTEST over {max_bytes} bytes")
    try:
        magic, st = _HEADER.unpack_from(data, 0)
    except struct.error:
        raise _malformed(message="TPMS_ATTEST: truncated header") from None
    if magic != TPM_GENERATED_VALUE or st != TPM_ST_ATTEST_QUOTE:
        raise InvalidInput(
            f"the attestation structure is not a TPM quote (magic {magic:#010x}, type {st:#06x})",
            hint="answer the challenge with TPM2_Quote",
            code="attestation.quote.type",
        )
    signer, pos = _tpm2b(data, _HEADER.size, MAX_NAME_BYTES, "qualifiedSigner")
    extra, pos = _tpm2b(data, pos, MAX_DATA_BYTES, "extraData")
    try:
        clock, resets, restarts, safe, firmware = _CLOCK.unpack_from(data, pos)
    except struct.error:
        raise _malformed(message="TPMS_ATTEST: truncated clockInfo") from None
    if safe > 1:
        raise _malformed(message="TPMS_CLOCK_INFO: safe is not YES or NO")
    banks, pos = _parse_selection(data, pos + _CLOCK.size)
    digest, pos = _tpm2b(data, pos, MAX_DIGEST_BYTES, "pcrDigest")
    if pos < len(data):  # each read checked its own end
        raise _malformed(message="TPMS_ATTEST: trailing bytes")
    return Attest(
        qualified_signer=signer,
        extra_data=extra,
        clock_info=ClockInfo(
            clock=clock, reset_count=resets, restart_count=restarts, safe=bool(safe)
        ),
        firmware_version=firmware,
        pcr_select=banks,
        pcr_digest=digest,
    )


def parse_ecdsa_signature(data: bytes) -> EcdsaSignature:
    """Parse a marshalled ``TPMT_SIGNATURE`` that must be ECDSA with P-256-sized ``r``, ``s``.

    Args:
        data: The bytes the TPM returned as ``signature``.

    Returns:
        The signature (its hash algorithm is checked by the verifier).

    Raises:
        InvalidInput: Not an ECDSA signature, truncated, oversized or with trailing bytes
            (``attestation.evidence.malformed``).
    """
    try:
        sig_alg, hash_alg = _SIG_HEAD.unpack_from(data, 0)
    except struct.error:
        raise _malformed(message="TPMT_SIGNATURE: truncated") from None
    if sig_alg != TPM_ALG_ECDSA:
        raise _malformed(message=f"TPMT_SIGNATURE: sigAlg {sig_alg:#06x} is not ECDSA")
    r, pos = _tpm2b(data, _SIG_HEAD.size, MAX_ECC_PARAMETER_BYTES, "signatureR")
    s, pos = _tpm2b(data, pos, MAX_ECC_PARAMETER_BYTES, "signatureS")
    if pos < len(data):  # each read checked its own end
        raise _malformed(message="TPMT_SIGNATURE: trailing bytes")
    return EcdsaSignature(hash_alg=hash_alg, r=int.from_bytes(r, "big"), s=int.from_bytes(s, "big"))


def tpm_name(public_area: bytes) -> bytes:
    """The TPM name of an object with name algorithm SHA-256: ``0x000B || SHA-256(TPMT_PUBLIC)``.

    Args:
        public_area: The marshalled ``TPMT_PUBLIC`` (without the ``TPM2B`` size).
    """
    return _U16.pack(TPM_ALG_SHA256) + hashlib.sha256(public_area).digest()


def qualified_name(parent_qualified_name: bytes, name: bytes) -> bytes:
    """A qualified name: ``0x000B || SHA-256(parent's qualified name || name)`` (Part 1, 16).

    Args:
        parent_qualified_name: The parent's qualified name; for a primary key, the 4-byte
            handle of its hierarchy (``TPM_RH_ENDORSEMENT`` is ``0x4000000B``).
        name: The object's name.
    """
    return _U16.pack(TPM_ALG_SHA256) + hashlib.sha256(parent_qualified_name + name).digest()


# -- builders ---------------------------------------------------------------------------------


def _b(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def build_pcr_selection(banks: Sequence[PcrSelection], *, select_bytes: int = 3) -> bytes:
    """Marshal a ``TPML_PCR_SELECTION`` (``select_bytes`` is ``sizeofSelect``, 3 for 24 PCRs)."""
    out = [_U32.pack(len(banks))]
    for bank in banks:
        bitmap = bytearray(select_bytes)
        for pcr in bank.pcrs:
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        out.append(_SEL_HEAD.pack(bank.hash_alg, select_bytes) + bytes(bitmap))
    return b"".join(out)


def build_attest_quote(
    *,
    qualified_signer: bytes,
    extra_data: bytes,
    clock_info: ClockInfo,
    firmware_version: int,
    pcr_select: Sequence[PcrSelection],
    pcr_digest: bytes,
    magic: int = TPM_GENERATED_VALUE,
    attest_type: int = TPM_ST_ATTEST_QUOTE,
) -> bytes:
    """Marshal a quote's ``TPMS_ATTEST`` exactly as TPM2_Quote does.

    Args:
        qualified_signer: The signing key's qualified name.
        extra_data: The qualifying data (nonce).
        clock_info: The clock and counters.
        firmware_version: The firmware version.
        pcr_select: The banks and PCRs quoted.
        pcr_digest: The digest over the selected PCR values.
        magic: The magic (only tests of bad structures change it).
        attest_type: The structure type (only tests of bad structures change it).

    Returns:
        The marshalled bytes: what the TPM signs.
    """
    ci = clock_info
    return b"".join(
        (
            _HEADER.pack(magic, attest_type),
            _b(qualified_signer),
            _b(extra_data),
            _CLOCK.pack(ci.clock, ci.reset_count, ci.restart_count, int(ci.safe), firmware_version),
            build_pcr_selection(pcr_select),
            _b(pcr_digest),
        )
    )


def build_ecdsa_signature(*, r: int, s: int, hash_alg: int = TPM_ALG_SHA256) -> bytes:
    """Marshal an ECDSA P-256 ``TPMT_SIGNATURE`` (``r`` and ``s`` as 32-byte ``TPM2B``)."""
    size = MAX_ECC_PARAMETER_BYTES
    return b"".join(
        (
            _SIG_HEAD.pack(TPM_ALG_ECDSA, hash_alg),
            _b(r.to_bytes(size, "big")),
            _b(s.to_bytes(size, "big")),
        )
    )


def ecdsa_signature_from_der(der: bytes) -> bytes:
    """Marshal a DER ECDSA P-256/SHA-256 signature (as ``cryptography`` makes it) as TPM does."""
    r, s = decode_dss_signature(der)
    return build_ecdsa_signature(r=r, s=s)
