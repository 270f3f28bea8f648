"""TPM 2.0 structure parsing: exact bytes, round trips, strict bounds, fuzzing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustfleet.attestation.tpmstructs import (
    TPM_ALG_SHA256,
    ClockInfo,
    PcrSelection,
    build_attest_quote,
    build_ecdsa_signature,
    build_pcr_selection,
    parse_attest_quote,
    parse_ecdsa_signature,
    parse_pcr_selection,
    qualified_name,
    tpm_name,
)
from trustfleet.errors import InvalidInput

SIGNER = b"\x00\x0b" + bytes(range(32))
NONCE = bytes(range(100, 132))
CLOCK = ClockInfo(clock=0x0102030405060708, reset_count=9, restart_count=2, safe=True)
SEL = [PcrSelection(TPM_ALG_SHA256, (0, 4, 9, 10))]
DIGEST = hashlib.sha256(b"pcrs").digest()


def quote(**changes: object) -> bytes:
    args: dict[str, object] = {
        "qualified_signer": SIGNER,
        "extra_data": NONCE,
        "clock_info": CLOCK,
        "firmware_version": 0x1122334455667788,
        "pcr_select": SEL,
        "pcr_digest": DIGEST,
    }
    args.update(changes)
    return build_attest_quote(**args)  # type: ignore[arg-type]


def test_quote_bytes_are_laid_out_as_tpm2_quote_marshals_them() -> None:
    expected = b"".join(
        [
            bytes.fromhex("ff544347 8018"),  # magic, TPM_ST_ATTEST_QUOTE
            b"\x00\x22" + SIGNER,  # TPM2B_NAME
            b"\x00\x20" + NONCE,  # TPM2B_DATA extraData
            bytes.fromhex("0102030405060708 00000009 00000002 01"),  # TPMS_CLOCK_INFO
            bytes.fromhex("1122334455667788"),  # firmwareVersion
            bytes.fromhex("00000001 000b 03 110600"),  # TPML_PCR_SELECTION sha256:0,4,9,10
            b"\x00\x20" + DIGEST,  # TPM2B_DIGEST pcrDigest
        ]
    )
    assert quote() == expected


def test_quote_round_trip() -> None:
    parsed = parse_attest_quote(quote(), max_bytes=1024)
    assert parsed.qualified_signer == SIGNER
    assert parsed.extra_data == NONCE
    assert parsed.clock_info == CLOCK
    assert parsed.firmware_version == 0x1122334455667788
    assert parsed.pcr_select == (PcrSelection(TPM_ALG_SHA256, (0, 4, 9, 10)),)
    assert parsed.pcr_digest == DIGEST


def test_signature_round_trip_and_layout() -> None:
    raw = build_ecdsa_signature(r=5, s=2**255 + 1)
    assert raw[:8] == bytes.fromhex("0018 000b 0020 0000")
    assert len(raw) == 4 + 2 * 34
    sig = parse_ecdsa_signature(raw)
    assert (sig.hash_alg, sig.r, sig.s) == (TPM_ALG_SHA256, 5, 2**255 + 1)


def test_names() -> None:
    name = tpm_name(b"public area")
    assert name == b"\x00\x0b" + hashlib.sha256(b"public area").digest()
    parent = b"\x40\x00\x00\x0b"
    assert qualified_name(parent, name) == b"\x00\x0b" + hashlib.sha256(parent + name).digest()


BAD_QUOTES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "attestation.evidence.malformed"),
    ("magic-only", bytes.fromhex("ff544347"), "attestation.evidence.malformed"),
    ("wrong-magic", b"\x00" + quote()[1:], "attestation.quote.type"),
    ("certify-type", quote()[:4] + b"\x80\x17" + quote()[6:], "attestation.quote.type"),
    ("truncated", quote()[:-1], "attestation.evidence.malformed"),
    ("trailing", quote() + b"\x00", "attestation.evidence.malformed"),
    ("signer-too-long", quote(qualified_signer=b"\x01" * 67), "attestation.evidence.malformed"),
    ("extra-data-too-long", quote(extra_data=b"\x01" * 67), "attestation.evidence.malformed"),
    ("digest-too-long", quote(pcr_digest=b"\x01" * 65), "attestation.evidence.malformed"),
    (
        "safe-not-yes-no",
        quote().replace(bytes.fromhex("00000002 01 1122"), bytes.fromhex("00000002 02 1122"), 1),
        "attestation.evidence.malformed",
    ),
    (
        "too-many-banks",
        quote(pcr_select=[PcrSelection(TPM_ALG_SHA256, (0,))] * 17),
        "attestation.evidence.malformed",
    ),
    (
        "select-size-zero",
        quote().replace(bytes.fromhex("000b03110600"), bytes.fromhex("000b00"), 1)[:-1],
        "attestation.evidence.malformed",
    ),
]


@pytest.mark.parametrize(
    ("data", "code"), [c[1:] for c in BAD_QUOTES], ids=[c[0] for c in BAD_QUOTES]
)
def test_bad_quotes_are_refused_with_their_code(data: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_attest_quote(data, max_bytes=1024)
    assert info.value.code == code


def test_quote_over_the_bound_is_refused() -> None:
    with pytest.raises(InvalidInput, match="over 100 bytes"):
        parse_attest_quote(quote(), max_bytes=100)


BAD_SIGNATURES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("rsassa", bytes.fromhex("0014000b") + build_ecdsa_signature(r=1, s=1)[4:]),
    ("r-too-long", bytes.fromhex("0018000b 0021") + b"\x01" * 33 + b"\x00\x01\x01"),
    ("truncated", build_ecdsa_signature(r=1, s=1)[:-1]),
    ("trailing", build_ecdsa_signature(r=1, s=1) + b"\x00"),
]


@pytest.mark.parametrize("data", [c[1] for c in BAD_SIGNATURES], ids=[c[0] for c in BAD_SIGNATURES])
def test_bad_signatures_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_ecdsa_signature(data)
    assert info.value.code == "attestation.evidence.malformed"


_banks = st.lists(
    st.builds(
        PcrSelection,
        st.sampled_from([0x0004, TPM_ALG_SHA256, 0x000C]),
        st.sets(st.integers(0, 23)).map(lambda s: tuple(sorted(s))),
    ),
    max_size=4,
)


@given(_banks)
def test_pcr_selection_round_trip(banks: list[PcrSelection]) -> None:
    assert parse_pcr_selection(build_pcr_selection(banks)) == tuple(banks)


@settings(max_examples=200)
@given(
    signer=st.binary(max_size=66),
    extra=st.binary(max_size=66),
    clock=st.integers(0, 2**64 - 1),
    counters=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    banks=_banks,
    digest=st.binary(max_size=64),
)
def test_quote_round_trip_property(
    *,
    signer: bytes,
    extra: bytes,
    clock: int,
    counters: tuple[int, int],
    banks: list[PcrSelection],
    digest: bytes,
) -> None:
    info = ClockInfo(clock=clock, reset_count=counters[0], restart_count=counters[1], safe=False)
    raw = quote(
        qualified_signer=signer,
        extra_data=extra,
        clock_info=info,
        pcr_select=banks,
        pcr_digest=digest,
    )
    parsed = parse_attest_quote(raw, max_bytes=4096)
    assert (parsed.qualified_signer, parsed.extra_data, parsed.pcr_digest) == (
        signer,
        extra,
        digest,
    )
    assert parsed.clock_info == info
    assert parsed.pcr_select == tuple(banks)


_CODES = {"attestation.evidence.malformed", "attestation.quote.type"}


@settings(max_examples=500)
@given(
    st.binary(max_size=300)
    | st.builds(lambda p, t: quote()[:p] + t, st.integers(0, 160), st.binary(max_size=8))
)
def test_parsers_only_raise_invalid_input(data: bytes) -> None:
    for parse in (
        lambda d: parse_attest_quote(d, max_bytes=1024),
        parse_ecdsa_signature,
        parse_pcr_selection,
    ):
        try:
            parse(data)
        except InvalidInput as exc:
            assert exc.code in _CODES
