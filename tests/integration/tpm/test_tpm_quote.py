"""PCRs and quotes from a real swtpm, checked with cryptography and tpm2-pytss's parsers."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.exceptions import InvalidSignature
from tpm2_pytss.constants import TPM2_ST
from tpm2_pytss.types import TPMS_ATTEST
from tpm_support import BOOT_PCRS, boot_events, verify_quote

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.keystore.tpm import Tpm, expected_pcrs


def test_pcr_extend_and_read_follow_the_replay(tpm: Tpm) -> None:
    events = boot_events(b"image 1.0.0")
    for pcr, digest, _component in events:
        tpm.pcr_extend(pcr, digest)
    expected = expected_pcrs((pcr, digest) for pcr, digest, _c in events)
    assert tpm.pcr_read(BOOT_PCRS) == expected
    many = tpm.pcr_read(range(12))  # more than one TPM2_PCR_Read returns
    assert sorted(many) == list(range(12))
    assert many[1] == bytes(32)


def test_quote_signs_the_nonce_and_the_pcrs(tpm: Tpm) -> None:
    ak = tpm.create_ak()
    for pcr, digest, _component in boot_events(b"image 1.0.0"):
        tpm.pcr_extend(pcr, digest)
    nonce = os.urandom(32)
    attest, signature = tpm.quote(nonce, list(BOOT_PCRS))
    verify_quote(ak.public_pem, attest, signature)
    parsed, used = TPMS_ATTEST.unmarshal(attest)
    assert used == len(attest)
    assert parsed.type == TPM2_ST.ATTEST_QUOTE
    assert bytes(parsed.extraData) == nonce
    assert bytes(parsed.qualifiedSigner) == ak.qualified_name
    values = tpm.pcr_read(BOOT_PCRS)
    composite = hashlib.sha256(b"".join(values[p] for p in BOOT_PCRS)).digest()
    assert bytes(parsed.attested.quote.pcrDigest) == composite
    assert parsed.clockInfo.resetCount == tpm.clock().reset_count
    with pytest.raises(InvalidSignature):
        tampered = attest[:-1] + bytes([attest[-1] ^ 1])
        verify_quote(ak.public_pem, tampered, signature)


def test_quote_needs_an_ak(tpm: Tpm) -> None:
    with pytest.raises(NotFound) as err:
        tpm.quote(b"n" * 32, [0])
    assert err.value.code == "tpm.ak.missing"


@pytest.mark.parametrize(
    ("nonce", "pcrs", "code"),
    [
        (b"", [0], "tpm.quote.nonce"),
        (b"n" * 65, [0], "tpm.quote.nonce"),
        (b"n", [], "tpm.pcr.empty"),
        (b"n", [24], "tpm.pcr.index"),
        (b"n", [-1], "tpm.pcr.index"),
    ],
    ids=["empty-nonce", "long-nonce", "no-pcr", "pcr-24", "pcr-negative"],
)
def test_quote_inputs_are_checked(tpm: Tpm, nonce: bytes, pcrs: list[int], code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        tpm.quote(nonce, pcrs)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("pcr", "digest"),
    [(24, bytes(32)), (0, bytes(31)), (0, bytes(33))],
    ids=["pcr-24", "short-digest", "long-digest"],
)
def test_pcr_extend_inputs_are_checked(tpm: Tpm, pcr: int, digest: bytes) -> None:
    with pytest.raises(InvalidInput):
        tpm.pcr_extend(pcr, digest)
    assert tpm.pcr_read([0])[0] == bytes(32)
