"""Recorded quotes of a real TPM 2.0 (swtpm 0.7.1 driven by tpm2-tools) through the verifier.

Recorded once with: ``tpm2_createek -G ecc``; ``tpm2_createak -G ecc -g sha256 -s ecdsa -f pem
-n -q``; ``tpm2_pcrextend`` of PCRs 0, 4, 9, 10 with the digests of ``LOG`` (in that order, after
a TPM reset); twice ``tpm2_quote -l sha256:0,4,9,10 -q NONCE -g sha256`` (``-m`` gives the
TPMS_ATTEST, ``-s`` the TPMT_SIGNATURE). The live round trip against swtpm belongs to the TPM
adapter's integration tests; these bytes pin the parser to what a TPM really marshals. The
recording is in tests/vectors/tpm/swtpm-ecc/ (tests/vectors/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

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

TPM_RH_ENDORSEMENT = b"\x40\x00\x00\x0b"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RECORDING = "tpm/swtpm-ecc"


class Quote(NamedTuple):
    """One recorded ``tpm2_quote``: the TPMS_ATTEST and its TPMT_SIGNATURE."""

    attest: bytes
    signature: bytes


@dataclass(frozen=True)
class Recording:
    """What the TPM produced and the verifier's view of the device it came from."""

    quotes: tuple[Quote, Quote]
    ek_name: bytes
    ak_name: bytes
    entries: list[EventLogEntry]
    device: DeviceAttestationState
    challenge: Challenge
    references: ReferenceSet

    def evidence(self, quote: Quote, entries: list[EventLogEntry] | None = None) -> bytes:
        return encode_evidence(
            challenge_id=self.challenge.id,
            quote=quote.attest,
            signature=quote.signature,
            eventlog=self.entries if entries is None else entries,
            release="2.0.0",
            slot="a",
        )

    def verify(self, payload: bytes, **changes: object) -> tuple[str, ...]:
        args: dict[str, object] = {
            "challenge": self.challenge,
            "device": self.device,
            "references": self.references,
            "policy": AttestationPolicy(),
            "now": NOW + timedelta(seconds=1),
        }
        args.update(changes)
        return verify_evidence(payload, **args).codes  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rec(asset: Callable[[str], Path]) -> Recording:
    doc = json.loads(asset(f"{RECORDING}/recording.json").read_text(encoding="utf-8"))
    entries = [
        EventLogEntry(
            pcr=e["pcr"], type="EV_IPL", digest=bytes.fromhex(e["digest"]), component=e["component"]
        )
        for e in doc["eventlog"]
    ]
    references = ReferenceSet.build(
        models=[
            ModelReference(
                model="swtpm-v1",
                rom=frozenset({entries[0].digest}),
                bootloader=frozenset({entries[1].digest}),
                agent=frozenset({entries[3].digest}),
            )
        ],
        releases=[
            ReleaseReference(model="swtpm-v1", version="2.0.0", image_sha256=entries[2].digest)
        ],
    )
    device = DeviceAttestationState(
        device_id="dev-swtpm00000001",
        model="swtpm-v1",
        ak_public_key=asset(f"{RECORDING}/ak.pem").read_bytes(),
        ak_qualified_name=bytes.fromhex(doc["ak_qualified_name"]),
        allowed_releases=frozenset({"2.0.0"}),
    )
    quotes = tuple(
        Quote(
            attest=asset(f"{RECORDING}/quote-{n}.attest").read_bytes(),
            signature=asset(f"{RECORDING}/quote-{n}.sig").read_bytes(),
        )
        for n in (1, 2)
    )
    return Recording(
        quotes=(quotes[0], quotes[1]),
        ek_name=bytes.fromhex(doc["ek_name"]),
        ak_name=bytes.fromhex(doc["ak_name"]),
        entries=entries,
        device=device,
        challenge=Challenge(id="challenge-1", nonce=bytes.fromhex(doc["nonce"]), issued_at=NOW),
        references=references,
    )


def test_the_tpm_quote_parses_as_marshalled(rec: Recording) -> None:
    quote = parse_attest_quote(rec.quotes[0].attest, max_bytes=1024)
    assert quote.qualified_signer == rec.device.ak_qualified_name
    assert quote.extra_data == rec.challenge.nonce
    assert quote.clock_info == ClockInfo(clock=4342, reset_count=1, restart_count=0, safe=True)
    assert quote.pcr_select == (PcrSelection(TPM_ALG_SHA256, (0, 4, 9, 10)),)
    assert len(quote.pcr_digest) == 32
    signature = parse_ecdsa_signature(rec.quotes[0].signature)
    assert signature.hash_alg == TPM_ALG_SHA256


def test_the_qualified_name_is_computed_as_the_tpm_does(rec: Recording) -> None:
    ek_qualified_name = qualified_name(TPM_RH_ENDORSEMENT, rec.ek_name)
    assert qualified_name(ek_qualified_name, rec.ak_name) == rec.device.ak_qualified_name


@pytest.mark.parametrize("index", [0, 1], ids=["1", "2"])
def test_real_quotes_verify_clean(rec: Recording, index: int) -> None:
    assert rec.verify(rec.evidence(rec.quotes[index])) == ()


def test_the_second_quote_follows_the_first(rec: Recording) -> None:
    first_quote, second_quote = rec.quotes
    first = verify_evidence(
        rec.evidence(first_quote),
        challenge=rec.challenge,
        device=rec.device,
        references=rec.references,
        policy=AttestationPolicy(),
        now=NOW,
    )
    assert first.ok and first.facts.clock_info is not None
    later = replace(rec.device, last_clock=first.facts.clock_info)
    assert rec.verify(rec.evidence(second_quote), device=later) == ()
    # ... but not the other way round: the TPM clock would have gone back.
    second = parse_attest_quote(second_quote.attest, max_bytes=1024).clock_info
    assert rec.verify(rec.evidence(first_quote), device=replace(rec.device, last_clock=second)) == (
        "attestation.clock.regressed",
    )


def test_real_quote_tampering(rec: Recording) -> None:
    entries, (first, second) = rec.entries, rec.quotes
    # Extends of different PCRs commute; the log's order matters only within a PCR.
    swapped = [entries[1], entries[0], *entries[2:]]
    assert rec.verify(rec.evidence(first, swapped)) == ()
    forged = [*entries[:2], entries[2]._replace(digest=bytes(32)), entries[3]]
    assert rec.verify(rec.evidence(first, forged)) == (
        "attestation.eventlog.replay_mismatch",
        "attestation.measurement.unknown",
    )
    crossed = Quote(attest=first.attest, signature=second.signature)
    assert rec.verify(rec.evidence(crossed)) == ("attestation.quote.signature",)
    other = replace(rec.challenge, nonce=bytes(32))
    assert rec.verify(rec.evidence(first), challenge=other) == ("attestation.nonce.mismatch",)
