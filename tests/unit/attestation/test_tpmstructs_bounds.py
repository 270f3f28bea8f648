"""TPM 2.0 structures at their bounds: every size exactly at its limit and one past it.

Deterministic companions of test_attest_tpmstructs.py (whose property tests are random); with
the exact layouts and names, these are the tests that mutation testing runs for the module.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from trustfleet.attestation.tpmstructs import (
    MAX_DATA_BYTES,
    MAX_DIGEST_BYTES,
    MAX_ECC_PARAMETER_BYTES,
    MAX_NAME_BYTES,
    MAX_PCR_BANKS,
    MAX_PCR_SELECT_BYTES,
    TPM_ALG_ECDSA,
    TPM_ALG_SHA256,
    ClockInfo,
    EcdsaSignature,
    PcrSelection,
    build_attest_quote,
    build_ecdsa_signature,
    build_pcr_selection,
    ecdsa_signature_from_der,
    parse_attest_quote,
    parse_ecdsa_signature,
    parse_pcr_selection,
    qualified_name,
    tpm_name,
)
from trustfleet.errors import InvalidInput

MALFORMED = "attestation.evidence.malformed"
SIGNER = b"\x00\x0b" + bytes(range(32))
CLOCK = ClockInfo(clock=7, reset_count=3, restart_count=1, safe=True)
SEL = [PcrSelection(TPM_ALG_SHA256, (0, 4, 9, 10))]
DIGEST = hashlib.sha256(b"pcrs").digest()
HEADER = bytes.fromhex("ff544347 8018")


def quote(**changes: object) -> bytes:
    args: dict[str, object] = {
        "qualified_signer": SIGNER,
        "extra_data": b"nonce",
        "clock_info": CLOCK,
        "firmware_version": 1,
        "pcr_select": SEL,
        "pcr_digest": DIGEST,
    }
    args.update(changes)
    return build_attest_quote(**args)  # type: ignore[arg-type]


def refused(parse: object, data: bytes, code: str = MALFORMED) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(data)  # type: ignore[operator]
    assert info.value.code == code


def parse_quote(data: bytes) -> object:
    return parse_attest_quote(data, max_bytes=1024)


def _b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def test_the_bounds_are_those_of_the_tpm_spec() -> None:
    assert (MAX_NAME_BYTES, MAX_DATA_BYTES, MAX_DIGEST_BYTES) == (66, 66, 64)
    assert (MAX_PCR_BANKS, MAX_PCR_SELECT_BYTES, MAX_ECC_PARAMETER_BYTES) == (16, 4, 32)


# --- TPMS_ATTEST ------------------------------------------------------------------------------


def test_quote_layout_and_round_trip() -> None:
    clock = ClockInfo(clock=0x0102030405060708, reset_count=9, restart_count=2, safe=False)
    raw = quote(clock_info=clock, firmware_version=0x1122334455667788)
    assert raw == b"".join(
        [
            HEADER,
            b"\x00\x22" + SIGNER,
            b"\x00\x05nonce",
            bytes.fromhex("0102030405060708 00000009 00000002 00 1122334455667788"),
            bytes.fromhex("00000001 000b 03 110600"),
            b"\x00\x20" + DIGEST,
        ]
    )
    parsed = parse_quote(raw)
    assert parsed == (SIGNER, b"nonce", clock, 0x1122334455667788, tuple(SEL), DIGEST)


def test_names_are_sha256_with_the_algorithm_id() -> None:
    name = tpm_name(b"public area")
    assert name == b"\x00\x0b" + hashlib.sha256(b"public area").digest()
    parent = b"\x40\x00\x00\x0b"
    assert qualified_name(parent, name) == b"\x00\x0b" + hashlib.sha256(parent + name).digest()


def test_quote_length_bound_is_inclusive() -> None:
    raw = quote()
    assert parse_attest_quote(raw, max_bytes=len(raw)).pcr_digest == DIGEST
    with pytest.raises(InvalidInput) as info:
        parse_attest_quote(raw, max_bytes=len(raw) - 1)
    assert info.value.code == MALFORMED


def test_quote_fields_exactly_at_their_bounds_parse() -> None:
    signer, extra, digest = b"\x01" * 66, b"\x02" * 66, b"\x03" * 64
    parsed = parse_quote(quote(qualified_signer=signer, extra_data=extra, pcr_digest=digest))
    assert (parsed.qualified_signer, parsed.extra_data, parsed.pcr_digest) == (  # type: ignore[attr-defined]
        signer,
        extra,
        digest,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"qualified_signer": b"\x01" * 67}, "qualifiedSigner: size 67 over 66"),
        ({"extra_data": b"\x02" * 67}, "extraData: size 67 over 66"),
        ({"pcr_digest": b"\x03" * 65}, "pcrDigest: size 65 over 64"),
    ],
    ids=["signer-67", "extra-data-67", "digest-65"],
)
def test_quote_fields_one_past_their_bounds_are_malformed_and_named(
    changes: dict[str, bytes], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_quote(quote(**changes))
    assert info.value.code == MALFORMED
    assert str(info.value) == message


def test_empty_quote_fields_parse() -> None:
    parsed = parse_quote(quote(qualified_signer=b"", extra_data=b"", pcr_select=[], pcr_digest=b""))
    assert parsed.qualified_signer == parsed.extra_data == parsed.pcr_digest == b""  # type: ignore[attr-defined]
    assert parsed.pcr_select == ()  # type: ignore[attr-defined]


def test_a_header_alone_of_another_type_is_not_a_quote() -> None:
    refused(parse_quote, bytes.fromhex("ff544347 8017"), "attestation.quote.type")
    refused(parse_quote, bytes.fromhex("ff544348 8018"), "attestation.quote.type")
    refused(parse_quote, HEADER)  # a quote header and nothing after it
    refused(parse_quote, HEADER[:5])


@pytest.mark.parametrize("cut", range(len(quote())))
def test_every_truncation_of_a_quote_is_malformed(cut: int) -> None:
    refused(parse_quote, quote()[:cut])


def test_a_byte_after_a_quote_or_a_signature_is_trailing() -> None:
    for parse, data in (
        (parse_quote, quote()),
        (parse_ecdsa_signature, build_ecdsa_signature(r=1, s=2)),
    ):
        with pytest.raises(InvalidInput) as info:
            parse(data + b"\x00")  # type: ignore[operator]
        assert info.value.code == MALFORMED
        assert str(info.value).endswith(": trailing bytes")


def test_clock_safe_is_yes_or_no() -> None:
    assert parse_quote(quote()).clock_info.safe is True  # type: ignore[attr-defined]
    unsafe = CLOCK._replace(safe=False)
    assert parse_quote(quote(clock_info=unsafe)).clock_info == unsafe  # type: ignore[attr-defined]
    raw = quote()
    at = len(HEADER) + 2 + len(SIGNER) + 2 + len(b"nonce") + 8 + 4 + 4
    assert raw[at] == 1
    for bad in (2, 0xFF):
        refused(parse_quote, raw[:at] + bytes([bad]) + raw[at + 1 :])


# --- TPML_PCR_SELECTION -----------------------------------------------------------------------


def _bank(size: int, bitmap: bytes | None = None) -> bytes:
    return struct.pack(">HB", TPM_ALG_SHA256, size) + (bitmap or bytes(size))


def test_an_empty_selection_is_four_zero_bytes() -> None:
    assert parse_pcr_selection(bytes(4)) == ()
    refused(parse_pcr_selection, bytes(3))
    refused(parse_pcr_selection, bytes(5))  # trailing byte


def test_sizeof_select_from_one_to_four_bytes() -> None:
    one = parse_pcr_selection(struct.pack(">I", 1) + _bank(1, b"\x81"))
    assert one == (PcrSelection(TPM_ALG_SHA256, (0, 7)),)
    four = parse_pcr_selection(struct.pack(">I", 1) + _bank(4, b"\x01\x00\x00\x80"))
    assert four == (PcrSelection(TPM_ALG_SHA256, (0, 31)),)
    refused(parse_pcr_selection, struct.pack(">I", 1) + _bank(0))
    refused(parse_pcr_selection, struct.pack(">I", 1) + _bank(5))


def test_a_bank_cut_anywhere_is_malformed() -> None:
    data = struct.pack(">I", 2) + _bank(1, b"\x01") + _bank(3, b"\x01\x02\x04")
    assert parse_pcr_selection(data) == (
        PcrSelection(TPM_ALG_SHA256, (0,)),
        PcrSelection(TPM_ALG_SHA256, (0, 9, 18)),
    )
    for cut in range(len(data)):
        refused(parse_pcr_selection, data[:cut])


def test_at_most_max_banks() -> None:
    banks = [PcrSelection(TPM_ALG_SHA256, (pcr,)) for pcr in range(MAX_PCR_BANKS)]
    assert parse_pcr_selection(build_pcr_selection(banks)) == tuple(banks)
    refused(parse_pcr_selection, build_pcr_selection([*banks, banks[0]]))
    refused(parse_pcr_selection, struct.pack(">I", 2**32 - 1))


def test_build_pcr_selection_layout() -> None:
    assert build_pcr_selection(SEL) == bytes.fromhex("00000001 000b 03 110600")
    assert build_pcr_selection([PcrSelection(0x0004, (23,))], select_bytes=4) == bytes.fromhex(
        "00000001 0004 04 00008000"
    )


# --- TPMT_SIGNATURE ---------------------------------------------------------------------------


def test_signature_parameters_at_their_bounds() -> None:
    head = struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256)
    top = b"\xff" * 32
    assert parse_ecdsa_signature(head + _b(top) + _b(top)) == EcdsaSignature(
        TPM_ALG_SHA256, 2**256 - 1, 2**256 - 1
    )
    assert parse_ecdsa_signature(head + _b(b"") + _b(b"")) == EcdsaSignature(TPM_ALG_SHA256, 0, 0)
    for data, message in (
        (head + _b(b"\x01" * 33) + _b(b"\x01"), "signatureR: size 33 over 32"),
        (head + _b(b"\x01") + _b(b"\x01" * 33), "signatureS: size 33 over 32"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_ecdsa_signature(data)
        assert (info.value.code, str(info.value)) == (MALFORMED, message)


@pytest.mark.parametrize("cut", range(4 + 2 * 34))
def test_every_truncation_of_a_signature_is_malformed(cut: int) -> None:
    refused(parse_ecdsa_signature, build_ecdsa_signature(r=1, s=2)[:cut])


def test_only_ecdsa_signatures_parse() -> None:
    raw = build_ecdsa_signature(r=1, s=2, hash_alg=0x000C)
    assert parse_ecdsa_signature(raw) == EcdsaSignature(0x000C, 1, 2)
    refused(parse_ecdsa_signature, struct.pack(">H", 0x0014) + raw[2:])
    refused(parse_ecdsa_signature, struct.pack(">H", 0x0014) + raw[2:4])


def test_signatures_convert_between_der_and_tpm() -> None:
    der = encode_dss_signature(5, 2**255 + 3)
    raw = ecdsa_signature_from_der(der)
    assert raw == build_ecdsa_signature(r=5, s=2**255 + 3)
    assert raw[:8] == bytes.fromhex("0018 000b 0020 0000")
    assert parse_ecdsa_signature(raw).to_der() == der
