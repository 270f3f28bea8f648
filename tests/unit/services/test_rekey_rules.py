"""Which key a re-enrollment may certify (RFC 7030 §4.2.2): the pure rule, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustfleet.errors import InvalidInput
from trustfleet.services._enroll_rules import KeyChange, check_csr_key, key_fingerprint
from trustfleet.store.records import CertificateRecord

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DEVICE = "dev-rekeyrules01"
KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]  # K0 (IDevID), K1, K2, fresh


def _spki(n: int) -> bytes:
    return (
        KEYS[n]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _record(id_: int, kind: str, key: int, *, status: str = "valid") -> CertificateRecord:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(KEYS[key].public_key()).serial_number(id_)
        .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
        .sign(KEYS[key], hashes.SHA256())
    )  # fmt: skip
    return CertificateRecord(
        id=id_, issuer="device", serial=format(id_, "x"), kind=kind,  # type: ignore[arg-type]
        device_id=DEVICE, subject=f"CN={DEVICE}", not_before=NOW, not_after=NOW,
        sha256=f"{id_:064x}", der=cert.public_bytes(serialization.Encoding.DER),
        status=status, revoked_at=None, revocation_reason=None, created_at=NOW,  # type: ignore[arg-type]
    )  # fmt: skip


IDEVID = _record(1, "idevid", 0)
FIRST = _record(2, "ldevid", 0, status="revoked")  # same key as the IDevID, superseded
REKEYED = _record(3, "ldevid", 1, status="revoked")  # a first re-key, superseded since
CURRENT = _record(4, "ldevid", 2)
HISTORY = (IDEVID, FIRST, REKEYED, CURRENT)

# id: (presented, CSR key, expected: "same", "change" or a refusal code)
CASES = {
    "renewal-same-key": (CURRENT, 2, "same"),
    "rekey-fresh-key": (CURRENT, 3, "change"),
    "first-enrollment-idevid-key": (IDEVID, 0, "same"),
    "back-to-the-idevid-key": (CURRENT, 0, "est.csr.key_reused"),
    "back-to-a-superseded-key": (CURRENT, 1, "est.csr.key_reused"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_key_a_csr_may_certify(case: str) -> None:
    presented, key, expected = CASES[case]
    if expected.startswith("est."):
        with pytest.raises(InvalidInput) as refused:
            check_csr_key(_spki(key), presented=presented, certificates=HISTORY)
        assert refused.value.code == expected
        return
    change = check_csr_key(_spki(key), presented=presented, certificates=HISTORY)
    if expected == "same":
        assert change is None
    else:
        assert change == KeyChange(
            old_key_sha256=key_fingerprint(_spki(2)), new_key_sha256=key_fingerprint(_spki(key))
        )
