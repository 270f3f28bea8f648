"""Sealed storage bound to PCR values, including the values of a future boot."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE
from tpm2_pytss.types import TPML_PCR_SELECTION, TPMT_SYM_DEF
from tpm_support import BOOT_PCRS, boot_events

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.keystore.tpm import SwtpmInstance, Tpm, expected_pcrs, pcr_policy_digest
from trustfleet.keystore.tpm._seal import parse_blob

DATA_KEY = bytes(range(32))


def _boot(tpm: Tpm, image: bytes) -> None:
    for pcr, digest, _component in boot_events(image):
        tpm.pcr_extend(pcr, digest)


@pytest.mark.parametrize("pcrs", [[0], [0, 4, 9, 10], [3, 16, 23]], ids=["one", "boot", "spread"])
def test_software_policy_digest_equals_a_tpm_trial_session(tpm: Tpm, pcrs: list[int]) -> None:
    values = {p: hashlib.sha256(bytes([p])).digest() for p in pcrs}
    esapi = tpm._esapi  # the raw ESAPI: a trial session is outside the adapter's API
    session = esapi.start_auth_session(
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        TPM2_SE.TRIAL,
        TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
        TPM2_ALG.SHA256,
    )
    try:
        selection = TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, pcrs)))
        composite = hashlib.sha256(b"".join(values[p] for p in sorted(pcrs))).digest()
        esapi.policy_pcr(session, composite, selection)
        trial = bytes(esapi.policy_get_digest(session))
    finally:
        esapi.flush_context(session)
    assert pcr_policy_digest(values) == trial


def test_seal_then_unseal_with_the_current_pcrs(tpm: Tpm) -> None:
    _boot(tpm, b"image 1.0.0")
    blob = tpm.seal(DATA_KEY, pcr_values=tpm.pcr_read(BOOT_PCRS))
    assert DATA_KEY not in blob
    assert tpm.unseal(blob) == DATA_KEY
    assert tpm.unseal(blob) == DATA_KEY  # unsealing does not consume it


def test_unseal_fails_after_a_pcr_extend(tpm: Tpm) -> None:
    _boot(tpm, b"image 1.0.0")
    blob = tpm.seal(DATA_KEY, pcr_values=tpm.pcr_read(BOOT_PCRS))
    tpm.pcr_extend(9, hashlib.sha256(b"something else ran").digest())
    with pytest.raises(VerificationFailed) as err:
        tpm.unseal(blob)
    assert err.value.code == "tpm.unseal.policy"


def test_seal_to_the_next_boot_then_boot_it(swtpm: SwtpmInstance) -> None:
    next_boot = expected_pcrs((p, d) for p, d, _c in boot_events(b"image 2.0.0"))
    with Tpm(tcti=swtpm.tcti) as tpm:
        _boot(tpm, b"image 1.0.0")
        blob = tpm.seal(DATA_KEY, pcr_values=next_boot)
        with pytest.raises(VerificationFailed):
            tpm.unseal(blob)  # this boot ran 1.0.0
    swtpm.stop()  # reboot: the PCRs start from zero again
    swtpm.start()
    with Tpm(tcti=swtpm.tcti) as tpm:
        _boot(tpm, b"image 2.0.0")
        assert tpm.pcr_read(BOOT_PCRS) == next_boot
        assert tpm.unseal(blob) == DATA_KEY


def test_a_blob_of_another_tpm_is_refused(tpm: Tpm, other_tpm: Tpm) -> None:
    values = other_tpm.pcr_read([0])
    blob = other_tpm.seal(DATA_KEY, pcr_values=values)
    assert tpm.pcr_read([0]) == values
    with pytest.raises(VerificationFailed):
        tpm.unseal(blob)


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]


MALFORMED = {
    "empty": lambda b: b"",
    "magic": lambda b: b"X" + b[1:],
    "truncated": lambda b: b[:-5],
    "trailing": lambda b: b + b"\x00",
    "huge": lambda b: b + bytes(4096),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_blobs_are_invalid_input(tpm: Tpm, case: str) -> None:
    blob = tpm.seal(DATA_KEY, pcr_values=tpm.pcr_read([0]))
    with pytest.raises(InvalidInput) as err:
        tpm.unseal(MALFORMED[case](blob))
    assert err.value.code == "tpm.unseal.blob"


def test_an_altered_policy_in_the_blob_is_refused(tpm: Tpm) -> None:
    values = tpm.pcr_read([0])
    blob = tpm.seal(DATA_KEY, pcr_values={0: bytes(31) + b"\x01"})
    # The public area (last) ends with the authPolicy digest and the keyedhash scheme
    # (2 bytes) and an empty unique (2 bytes); flip a bit of the policy.
    altered = _flip(blob, len(blob) - 5)
    with pytest.raises(VerificationFailed):
        tpm.unseal(altered)
    assert tpm.pcr_read([0]) == values


@pytest.mark.parametrize(
    ("secret", "values"),
    [(b"", {0: bytes(32)}), (bytes(129), {0: bytes(32)}), (b"k", {}), (b"k", {0: bytes(31)})],
    ids=["empty-secret", "long-secret", "no-pcr", "short-value"],
)
def test_seal_inputs_are_checked(tpm: Tpm, secret: bytes, values: dict[int, bytes]) -> None:
    with pytest.raises(InvalidInput):
        tpm.seal(secret, pcr_values=values)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parse_blob_raises_only_invalid_input(tail: bytes) -> None:
    # No TPM needed: the blob is parsed before any command is sent.
    with contextlib.suppress(InvalidInput):
        parse_blob(b"TFSEAL\x00\x01" + tail)
