"""The broker's trust files across device CA generations (broker/_trust.py; docs/lifecycle.md).

Software keys stand in for the token keys: only the files' contents are under test.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.broker import BrokerCa, render_trust, subject_hash
from trustfleet.errors import VerificationFailed
from trustfleet.pki import DEVICE_CA, IssuerContext, build_crl, issue_ca, make_root_ca

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _ca(root: IssuerContext, name: str) -> IssuerContext:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_ca(issuer=root, public_key=key.public_key(), common_name=name,
                    organization="Test", profile=DEVICE_CA, now=NOW)  # fmt: skip
    return IssuerContext(cert=cert, key=key)


def _crl(ca: IssuerContext) -> bytes:
    crl = build_crl(issuer=ca, revoked=[], crl_number=1, now=NOW,
                    next_update=NOW + timedelta(days=1))  # fmt: skip
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def hierarchy() -> dict[str, IssuerContext]:
    key = ec.generate_private_key(ec.SECP384R1())
    root = IssuerContext(cert=make_root_ca(key=key, organization="Test", now=NOW), key=key)
    return {"root": root, "device": _ca(root, "Device CA"), "device-2": _ca(root, "Device CA 2")}


def _crl_issuers(pem: bytes) -> list[x509.Name]:
    blocks = pem.split(b"-----END X509 CRL-----")[:-1]
    return [x509.load_pem_x509_crl(b + b"-----END X509 CRL-----\n").issuer for b in blocks]


def _certs(pem: bytes) -> list[x509.Name]:
    return [c.subject for c in x509.load_pem_x509_certificates(pem)]


def test_an_overlap_trusts_both_device_cas_and_anchors_on_the_root(hierarchy: dict) -> None:
    old, new, root = hierarchy["device"], hierarchy["device-2"], hierarchy["root"]
    files = render_trust(
        [BrokerCa(old.cert, _crl(old)), BrokerCa(new.cert, _crl(new))], root=root.cert
    )
    assert _certs(files.cafile) == [old.cert.subject, new.cert.subject, root.cert.subject]
    assert _crl_issuers(files.crlfile) == [old.cert.subject, new.cert.subject]
    assert sorted(files.hashed) == sorted(f"{subject_hash(c.cert)}.0" for c in (old, new, root))


def test_a_retired_ca_keeps_only_its_final_crl(hierarchy: dict) -> None:
    old, new, root = hierarchy["device"], hierarchy["device-2"], hierarchy["root"]
    files = render_trust(
        [BrokerCa(old.cert, _crl(old), trusted=False), BrokerCa(new.cert, _crl(new))],
        root=root.cert,
    )
    assert old.cert.subject not in _certs(files.cafile)
    assert f"{subject_hash(old.cert)}.0" not in files.hashed
    assert _crl_issuers(files.crlfile) == [old.cert.subject, new.cert.subject]


def test_a_crl_of_another_ca_is_refused(hierarchy: dict) -> None:
    old, new, root = hierarchy["device"], hierarchy["device-2"], hierarchy["root"]
    with pytest.raises(VerificationFailed):
        render_trust([BrokerCa(new.cert, _crl(old))], root=root.cert)


def test_the_hashed_names_are_openssls(hierarchy: dict, tmp_path: Path) -> None:
    cert = hierarchy["device-2"].cert
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    assert out.stdout.strip() == subject_hash(cert)
