from __future__ import annotations

import base64
import contextlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from pki_hierarchy import DEVICE_ID, Hierarchy

from trustfleet import pki
from trustfleet.errors import InvalidInput

MAX = 64 * 1024


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _csr() -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


CSR = _csr()
DER = CSR.public_bytes(serialization.Encoding.DER)
B64 = base64.b64encode(DER)

GOOD_BODIES = {
    "base64-one-line": B64,
    "base64-crlf-64": b"\r\n".join(B64[i : i + 64] for i in range(0, len(B64), 64)) + b"\r\n",
    "base64-mime-76": base64.encodebytes(DER),
    "base64-surrounding-space": b"  \n" + B64 + b"\n\n",
    "pem": CSR.public_bytes(serialization.Encoding.PEM),
}


@pytest.mark.parametrize("name", list(GOOD_BODIES), ids=list(GOOD_BODIES))
def test_good_bodies_parse(name: str) -> None:
    assert pki.parse_csr_body(GOOD_BODIES[name], max_bytes=MAX) == CSR


BAD_BODIES = {
    "too-large": (b"A" * (MAX + 1), "est.body.too_large"),
    "not-base64": (b"this is *not* base64!", "est.body.not_base64"),
    "bad-padding": (B64[:-1] + b"=A", "est.body.not_base64"),
    "non-ascii": ("ünïcödé".encode(), "est.body.not_base64"),
    "base64-of-garbage": (base64.b64encode(b"\x30\x03garbage"), "est.body.not_csr"),
    "base64-of-zeros-in-a-sequence": (
        base64.b64encode(b"\x30\x82\x01\x00" + b"\0" * 256), "est.body.not_csr"
    ),
    "raw-der": (DER, "est.body.not_base64"),
    "empty": (b"", "est.body.not_csr"),
    "broken-pem": (
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "est.body.not_csr",
    ),
    "truncated": (base64.b64encode(DER[:-10]), "est.body.not_csr"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_BODIES), ids=list(BAD_BODIES))
def test_bad_bodies_are_refused(name: str) -> None:
    body, code = BAD_BODIES[name]
    with pytest.raises(InvalidInput) as info:
        pki.parse_csr_body(body, max_bytes=MAX)
    assert info.value.code == code


@given(st.binary(max_size=4096))
def test_parse_csr_body_raises_only_invalid_input(body: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        pki.parse_csr_body(body, max_bytes=2048)


@given(st.binary(max_size=2048).map(base64.b64encode))
def test_parse_csr_body_on_base64_of_anything(body: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        pki.parse_csr_body(body, max_bytes=MAX)


def test_content_types() -> None:
    assert pki.CONTENT_TYPE_CSR == "application/pkcs10"
    assert pki.CONTENT_TYPE_CERTS_ONLY == "application/pkcs7-mime; smime-type=certs-only"
    assert pki.CONTENT_TYPE_PKCS7 == "application/pkcs7-mime"


def test_certs_only_round_trip(hierarchy: Hierarchy) -> None:
    certs = [hierarchy.ldevid, hierarchy.device_ca.cert, hierarchy.root.cert]
    body = pki.certs_only(certs)
    assert all(len(line) <= 76 for line in body.splitlines())
    # CMS keeps certificates in a DER SET OF: the order is the encoding's, not ours.
    assert sorted(pki.parse_certs_only(body), key=_der) == sorted(certs, key=_der)


def test_openssl_reads_certs_only(hierarchy: Hierarchy, tmp_path: object) -> None:
    certs = [hierarchy.ldevid, hierarchy.device_ca.cert]
    der = base64.b64decode(pki.certs_only(certs))
    result = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-print_certs"],
        input=der, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    printed = x509.load_pem_x509_certificates(result.stdout)
    assert sorted(printed, key=_der) == sorted(certs, key=_der)


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"*", "est.body.not_base64"), (base64.b64encode(b"junk"), "est.body.not_certs"),
     (b"A" * 20, "est.body.too_large")],
    ids=["not-base64", "not-cms", "too-large"],
)  # fmt: skip
def test_parse_certs_only_refusals(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.parse_certs_only(body, max_bytes=16)
    assert info.value.code == code


def test_certs_only_needs_a_certificate() -> None:
    with pytest.raises(InvalidInput):
        pki.certs_only([])
