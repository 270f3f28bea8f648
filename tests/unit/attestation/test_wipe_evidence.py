"""The pure wipe-evidence verifier: good evidence, every field tampered, bad inputs."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from trustfleet.attestation.wipe import (
    ALL_WIPE_CODES,
    MAX_EVIDENCE_BYTES,
    canonical_bytes,
    signature_hash,
    signing_input,
    spki_sha256,
    unsigned_evidence,
    verify_wipe_evidence,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
DEVICE = "dev-0001-wipe"
NONCE = "ab" * 32
AK_NAME = "000b" + "cd" * 32


def _cert(key: Any, cn: str = DEVICE) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(signer, hashes.SHA256())
    )


KEY = ec.generate_private_key(ec.SECP256R1())
CERT = _cert(KEY)


def _sign(doc: dict[str, Any], key: ec.EllipticCurvePrivateKey = KEY) -> dict[str, Any]:
    signature = key.sign(signing_input(doc), ec.ECDSA(signature_hash(key.curve)))
    return {**doc, "signature": base64.b64encode(signature).decode()}


def _doc(**changes: Any) -> dict[str, Any]:
    doc = unsigned_evidence(
        device_id=DEVICE,
        nonce=NONCE,
        agent_time=NOW - timedelta(seconds=3),
        tpm_clock={"clock": 123456, "reset_count": 2, "restart_count": 0, "safe": True},
        token_keys=[{"label": "identity", "spki_sha256": spki_sha256(KEY.public_key())}],
        ak={"handle": "0x81010002", "name": AK_NAME},
        sealed=["tpm-clear", "tpm/datakey.sealed", "state.enc"],
    )
    doc.update(changes)
    return doc


def _verify(evidence: Any, **kw: Any) -> Any:
    args: dict[str, Any] = {"certificate": CERT, "device_id": DEVICE, "nonce": NONCE,
                            "now": NOW, "ak_name": AK_NAME}  # fmt: skip
    args.update(kw)
    return verify_wipe_evidence(evidence, **args)


def test_good_evidence_verifies() -> None:
    verdict = _verify(_sign(_doc()))
    assert verdict.ok, verdict.findings
    assert verdict.findings == ()
    assert verdict.reason() == ""


def test_p384_identity_key_verifies() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    doc = _doc(destroyed={"token_keys": [{"label": "identity",
                                          "spki_sha256": spki_sha256(key.public_key())}],
                          "ak": None, "sealed": []})  # fmt: skip
    assert _verify(_sign(doc, key), certificate=_cert(key), ak_name=None).ok


def test_canonical_encoding_is_sorted_compact_ascii() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", True], "signature": "x"}) == (
        b'{"a":["\\u00e9",true],"b":1}'
    )
    with pytest.raises(ValueError, match="float"):
        canonical_bytes({"a": 1.5})


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(leaf) if leaf.isdigit() else leaf] = value

    return change


# Each field changed after signing: the signature no longer verifies (and more may fail).
TAMPERED = {
    "device_id": (_set("device_id", "dev-0002-other"), "wipe.device.mismatch"),
    "nonce": (_set("nonce", "cd" * 32), "wipe.nonce.mismatch"),
    "agent_time": (_set("agent_time", (NOW - timedelta(seconds=9)).isoformat()), None),
    "tpm_clock.clock": (_set("tpm_clock.clock", 1), None),
    "tpm_clock.reset_count": (_set("tpm_clock.reset_count", 9), None),
    "tpm_clock.restart_count": (_set("tpm_clock.restart_count", 9), None),
    "tpm_clock.safe": (_set("tpm_clock.safe", False), "wipe.tpm_clock.unsafe"),
    "token_key.label": (_set("destroyed.token_keys.0.label", "other"), None),
    "token_key.spki": (_set("destroyed.token_keys.0.spki_sha256", "00" * 32),
                       "wipe.identity.not_destroyed"),
    "ak.handle": (_set("destroyed.ak.handle", "0x81010003"), None),
    "ak.name": (_set("destroyed.ak.name", "000b" + "ee" * 32), "wipe.ak.not_destroyed"),
    "sealed": (_set("destroyed.sealed", ["tpm-clear"]), None),
    "ak.removed": (_set("destroyed.ak", None), "wipe.ak.not_destroyed"),
    "v": (_set("v", 2), "wipe.evidence.malformed"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TAMPERED), ids=sorted(TAMPERED))
def test_every_field_tampered_is_refused(name: str) -> None:
    change, extra_code = TAMPERED[name]
    evidence = copy.deepcopy(_sign(_doc()))
    change(evidence)
    verdict = _verify(evidence)
    assert not verdict.ok
    if extra_code != "wipe.evidence.malformed":
        assert "wipe.signature" in verdict.codes
    if extra_code is not None:
        assert extra_code in verdict.codes
    assert set(verdict.codes) <= ALL_WIPE_CODES


def test_wrong_nonce_is_refused() -> None:
    verdict = _verify(_sign(_doc()), nonce="ef" * 32)
    assert verdict.codes == ("wipe.nonce.mismatch",)


def test_replayed_evidence_of_an_earlier_request_is_refused() -> None:
    earlier = _sign(_doc(nonce="01" * 32))  # genuinely signed, for another decommission
    assert _verify(earlier).codes == ("wipe.nonce.mismatch",)


def test_signed_by_another_key_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    verdict = _verify(_sign(_doc(), other))
    assert "wipe.signature" in verdict.codes


def test_certificate_of_another_device_is_refused() -> None:
    verdict = _verify(_sign(_doc()), certificate=_cert(KEY, cn="dev-0009-else"))
    assert verdict.codes == ("wipe.device.mismatch",)


def test_rsa_ldevid_is_unsupported() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verdict = _verify(_sign(_doc()), certificate=_cert(rsa_key))
    assert "wipe.key.unsupported" in verdict.codes


@pytest.mark.parametrize(
    ("agent_time", "ok"),
    [(NOW - timedelta(days=32), False), (NOW + timedelta(minutes=10), False),
     (NOW + timedelta(minutes=4), True), (NOW - timedelta(days=30), True)],
    ids=["too-old", "future", "small-skew", "within-a-month"],
)  # fmt: skip
def test_agent_time_bounds(agent_time: datetime, ok: bool) -> None:
    verdict = _verify(_sign(_doc(agent_time=agent_time.isoformat())))
    assert verdict.ok is ok
    assert ok or verdict.codes == ("wipe.time.range",)


def test_without_ak_on_record_no_ak_is_needed() -> None:
    doc = _doc(destroyed={"token_keys": [{"label": "identity",
                                          "spki_sha256": spki_sha256(KEY.public_key())}],
                          "ak": None, "sealed": []}, tpm_clock=None)  # fmt: skip
    assert _verify(_sign(doc), ak_name=None).ok


def test_oversized_evidence_is_malformed() -> None:
    keys = [{"label": f"k{i}", "spki_sha256": "a" * 128} for i in range(32)]
    big = _doc(destroyed={"token_keys": keys, "ak": None, "sealed": ["x" * 250] * 32})
    assert len(canonical_bytes(big)) > MAX_EVIDENCE_BYTES
    assert _verify(_sign(big)).codes == ("wipe.evidence.malformed",)


MALFORMED: dict[str, Any] = {
    "not-an-object": ["v", 1],
    "empty": {},
    "extra-member": {**_doc(), "extra": 1, "signature": "AA=="},
    "float": {**_doc(v=1.0), "signature": "AA=="},
    "bool-version": {**_doc(v=True), "signature": "AA=="},
    "no-signature": _doc(),
    "signature-not-base64": {**_doc(), "signature": "@@@"},
    "nonce-not-hex": {**_doc(nonce="XYZ"), "signature": "AA=="},
    "naive-time": {**_doc(agent_time="2030-05-01T12:00:00"), "signature": "AA=="},
    "bad-time": {**_doc(agent_time="yesterday"), "signature": "AA=="},
    "clock-negative": {**_doc(tpm_clock={"clock": -1, "reset_count": 0, "restart_count": 0,
                                         "safe": True}), "signature": "AA=="},
    "clock-bool": {**_doc(tpm_clock={"clock": True, "reset_count": 0, "restart_count": 0,
                                     "safe": True}), "signature": "AA=="},
    "keys-not-list": {**_doc(destroyed={"token_keys": {}, "ak": None, "sealed": []}),
                      "signature": "AA=="},
    "too-many-keys": {**_doc(destroyed={"token_keys": [{"label": "a", "spki_sha256": "ab"}] * 33,
                                        "ak": None, "sealed": []}), "signature": "AA=="},
    "non-ascii": {**_doc(device_id="dév"), "signature": "AA=="},
    "deep": {**_doc(destroyed={"token_keys": [], "ak": None, "sealed": [[[[[[[[1]]]]]]]]}),
             "signature": "AA=="},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED), ids=sorted(MALFORMED))
def test_malformed_evidence_is_one_finding(name: str) -> None:
    verdict = _verify(MALFORMED[name])
    assert not verdict.ok
    assert verdict.codes == ("wipe.evidence.malformed",)
