"""The agent's small certificate reader agrees with `cryptography` and refuses garbage."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from trustfleet.agent.certfacts import read_cert_facts, read_pem_cert_facts
from trustfleet.errors import InvalidInput

KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(serial: int, not_before: datetime, not_after: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facts-test-0001")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(KEY, hashes.SHA256())
    )


times = st.datetimes(min_value=datetime(1951, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


@settings(max_examples=60, deadline=None)
@given(
    serial=st.integers(min_value=1, max_value=2**159 - 1), start=times, days=st.integers(1, 20000)
)
def test_agrees_with_cryptography(serial: int, start: datetime, days: int) -> None:
    cert = _cert(serial, start, start + timedelta(days=days))
    facts = read_pem_cert_facts(cert.public_bytes(serialization.Encoding.PEM))
    assert facts.serial == cert.serial_number
    assert facts.not_before == cert.not_valid_before_utc
    assert facts.not_after == cert.not_valid_after_utc
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert facts.spki == spki


def test_renewal_point() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    facts = read_cert_facts(
        _cert(7, start, start + timedelta(days=30)).public_bytes(serialization.Encoding.DER)
    )
    assert facts.renewal_due_at(2 / 3) == start + timedelta(days=20)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x82\xff\xff", b"\x02\x01\x01", b"not a cert", b"\x30\x03\x02\x01\x01"],
    ids=["empty", "truncated", "length-past-end", "not-a-sequence", "text", "no-tbs"],
)
def test_malformed_der_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        read_cert_facts(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        read_cert_facts(data)


def test_pem_without_certificate_is_refused() -> None:
    with pytest.raises(InvalidInput):
        read_pem_cert_facts(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
