"""Recorded quotes of a real TPM 2.0 (swtpm 0.7.1 driven by tpm2-tools) through the verifier.

Recorded once with: ``tpm2_createek -G ecc``; ``tpm2_createak -G ecc -g sha256 -s ecdsa -f pem
-n -q``; ``tpm2_pcrextend`` of PCRs 0, 4, 9, 10 with the digests of ``LOG`` (in that order, after
a TPM reset); twice ``tpm2_quote -l sha256:0,4,9,10 -q NONCE -g sha256`` (``-m`` gives the
TPMS_ATTEST, ``-s`` the TPMT_SIGNATURE). The live round trip against swtpm belongs to the TPM
adapter's integration tests; these bytes pin the parser to what a TPM really marshals.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.attestation import (
    AttestationPolicy,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    EventLogEntry,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    encode_evidence,
    verify_evidence,
)
from trustfleet.attestation.tpmstructs import (
    TPM_ALG_SHA256,
    PcrSelection,
    parse_attest_quote,
    parse_ecdsa_signature,
    qualified_name,
)

QUOTE_1 = bytes.fromhex(
    "ff54434780180022000bb21524e5b65f851e0ad298352f6c82479f36acadff4edfc585ac0ca3dd17a8f20020"
    "7bb676aa35a26b3acea07e4bd670bd449cd8882ecb865458ec9e9f644e244e6700000000000010f600000001"
    "0000000001201910230016363600000001000b0311060000209bd618da532f65a1a8a52725d7cad85d07c597"
    "de2126c7515ec4630dfebb17b8"
)
SIGNATURE_1 = bytes.fromhex(
    "0018000b0020a59c82cc11305b46d75e7bb69f00eeec1b511e23c770d29ae42d85572198f4ac00202178d550"
    "762cf06b3221c1a1ee372e77b22e63b8c0ef2d5d39b61d16e5285c0d"
)
QUOTE_2 = bytes.fromhex(
    "ff54434780180022000bb21524e5b65f851e0ad298352f6c82479f36acadff4edfc585ac0ca3dd17a8f20020"
    "7bb676aa35a26b3acea07e4bd670bd449cd8882ecb865458ec9e9f644e244e67000000000000116000000001"
    "0000000001201910230016363600000001000b0311060000209bd618da532f65a1a8a52725d7cad85d07c597"
    "de2126c7515ec4630dfebb17b8"
)
SIGNATURE_2 = bytes.fromhex(
    "0018000b0020839c7dcf8f922bc11b85e22aa537426be74cd7c7bd3c43bb11f0c1fddb9a0c3100206d50d51b"
    "837c1444b2edfb22fa207079d78c78a68b0ef1a06a9abced3c3a6502"
)
NONCE = bytes.fromhex("7bb676aa35a26b3acea07e4bd670bd449cd8882ecb865458ec9e9f644e244e67")
EK_NAME = bytes.fromhex("000b7696e4b9e66f907f4d61a613bb927b5d5f7bb2528cf6d4b7aa2102a0b3fd3069")
AK_NAME = bytes.fromhex("000b85703308c48658ec864b082960240513dc23e9808fe3a8eea39c737f0d777307")
AK_QUALIFIED_NAME = bytes.fromhex(
    "000bb21524e5b65f851e0ad298352f6c82479f36acadff4edfc585ac0ca3dd17a8f2"
)
AK_PEM = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKFiQ1VsKqZt1ovatQyXNP1dlOL0I
oHai9d6mlAloMxp/7J1fOAA2WzYLA1Zwp4qE7VWdefiUKjpA5s4G89NmFA==
-----END PUBLIC KEY-----
"""
LOG = [
    (0, "rom", "cfe247ac8caf9f53dc2b053dd29489d1cce786be5bcbc3d77e3b065a7098026d"),
    (4, "bootloader", "c5cca3d8e99b999a3108a784e6f19a7241042903ae535fc293c56daccd0a3fd4"),
    (9, "image", "3b169caa4ab921bcfa6e35b8e78b093a864ab4bc64513246d89e8c67ef36c280"),
    (10, "agent", "734d6744335b11929bf324b98d496b1bda89f37d1d4df1a446ed4d68e98fed79"),
]

TPM_RH_ENDORSEMENT = b"\x40\x00\x00\x0b"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ENTRIES = [
    EventLogEntry(pcr=pcr, type="EV_IPL", digest=bytes.fromhex(digest), component=component)
    for pcr, component, digest in LOG
]
REFS = ReferenceSet.build(
    models=[
        ModelReference(
            model="swtpm-v1",
            rom=frozenset({ENTRIES[0].digest}),
            bootloader=frozenset({ENTRIES[1].digest}),
            agent=frozenset({ENTRIES[3].digest}),
        )
    ],
    releases=[ReleaseReference(model="swtpm-v1", version="2.0.0", image_sha256=ENTRIES[2].digest)],
)
DEVICE = DeviceAttestationState(
    device_id="dev-swtpm00000001",
    model="swtpm-v1",
    ak_public_key=AK_PEM,
    ak_qualified_name=AK_QUALIFIED_NAME,
    allowed_releases=frozenset({"2.0.0"}),
)
CHALLENGE = Challenge(id="challenge-1", nonce=NONCE, issued_at=NOW)


def evidence(quote: bytes, signature: bytes, entries: list[EventLogEntry] = ENTRIES) -> bytes:
    return encode_evidence(
        challenge_id=CHALLENGE.id,
        quote=quote,
        signature=signature,
        eventlog=entries,
        release="2.0.0",
        slot="a",
    )


def verify(payload: bytes, **changes: object) -> tuple[str, ...]:
    args: dict[str, object] = {
        "challenge": CHALLENGE,
        "device": DEVICE,
        "references": REFS,
        "policy": AttestationPolicy(),
        "now": NOW + timedelta(seconds=1),
    }
    args.update(changes)
    return verify_evidence(payload, **args).codes  # type: ignore[arg-type]


def test_the_tpm_quote_parses_as_marshalled() -> None:
    quote = parse_attest_quote(QUOTE_1, max_bytes=1024)
    assert quote.qualified_signer == AK_QUALIFIED_NAME
    assert quote.extra_data == NONCE
    assert quote.clock_info == ClockInfo(clock=4342, reset_count=1, restart_count=0, safe=True)
    assert quote.pcr_select == (PcrSelection(TPM_ALG_SHA256, (0, 4, 9, 10)),)
    assert len(quote.pcr_digest) == 32
    signature = parse_ecdsa_signature(SIGNATURE_1)
    assert signature.hash_alg == TPM_ALG_SHA256


def test_the_qualified_name_is_computed_as_the_tpm_does() -> None:
    ek_qualified_name = qualified_name(TPM_RH_ENDORSEMENT, EK_NAME)
    assert qualified_name(ek_qualified_name, AK_NAME) == AK_QUALIFIED_NAME


@pytest.mark.parametrize(
    ("quote", "signature"), [(QUOTE_1, SIGNATURE_1), (QUOTE_2, SIGNATURE_2)], ids=["1", "2"]
)
def test_real_quotes_verify_clean(quote: bytes, signature: bytes) -> None:
    assert verify(evidence(quote, signature)) == ()


def test_the_second_quote_follows_the_first() -> None:
    first = verify_evidence(
        evidence(QUOTE_1, SIGNATURE_1),
        challenge=CHALLENGE,
        device=DEVICE,
        references=REFS,
        policy=AttestationPolicy(),
        now=NOW,
    )
    assert first.ok and first.facts.clock_info is not None
    later = replace(DEVICE, last_clock=first.facts.clock_info)
    assert verify(evidence(QUOTE_2, SIGNATURE_2), device=later) == ()
    # ... but not the other way round: the TPM clock would have gone back.
    second = parse_attest_quote(QUOTE_2, max_bytes=1024).clock_info
    assert verify(evidence(QUOTE_1, SIGNATURE_1), device=replace(DEVICE, last_clock=second)) == (
        "attestation.clock.regressed",
    )


def test_real_quote_tampering() -> None:
    # Extends of different PCRs commute; the log's order matters only within a PCR.
    swapped = [ENTRIES[1], ENTRIES[0], *ENTRIES[2:]]
    assert verify(evidence(QUOTE_1, SIGNATURE_1, swapped)) == ()
    forged = [*ENTRIES[:2], ENTRIES[2]._replace(digest=bytes(32)), ENTRIES[3]]
    assert verify(evidence(QUOTE_1, SIGNATURE_1, forged)) == (
        "attestation.eventlog.replay_mismatch",
        "attestation.measurement.unknown",
    )
    assert verify(evidence(QUOTE_1, SIGNATURE_2)) == ("attestation.quote.signature",)
    other = replace(CHALLENGE, nonce=bytes(32))
    assert verify(evidence(QUOTE_1, SIGNATURE_1), challenge=other) == (
        "attestation.nonce.mismatch",
    )
