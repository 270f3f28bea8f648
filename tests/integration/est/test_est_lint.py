"""Everything the run issued, through pkilint: CA, server, IDevID and LDevID certificates,
every CRL from the endpoints, and an OCSP response. Zero WARNING-or-worse findings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pkilint import lint_certificate, lint_crl, lint_ocsp_response
from support.server import RunningServer, enroll_software, make_software_device

pytestmark = pytest.mark.integration


def _pem_certs(server: RunningServer) -> dict[str, bytes]:
    found = {}
    for pem in sorted((server.home / "public").glob("*-ca.pem")) + sorted(
        (server.home / "tls").glob("*-chain.pem")
    ):
        for i, cert in enumerate(x509.load_pem_x509_certificates(pem.read_bytes())):
            found[f"{pem.name}#{i}"] = cert.public_bytes(serialization.Encoding.DER)
    return found


def test_everything_issued_lints_clean(server: RunningServer, work: Path) -> None:
    device = make_software_device(server, work)
    ldevid, _key = enroll_software(server, device, work)
    server.cli_json("factory", "provision", "--out", work / "devices", "--count", "1")

    certificates = _pem_certs(server)
    with server.runtime.uow.begin() as tx:
        for record in tx.devices.list(limit=1000):
            for cert in tx.certificates.list_for_device(record.id):
                certificates[f"{cert.kind}:{record.id}:{cert.serial}"] = cert.der
    kinds = {name.split(":")[0] for name in certificates}
    assert {"idevid", "ldevid"} <= kinds
    findings = {name: lint_certificate(der) for name, der in certificates.items()}

    for ca in ("root", "manufacturing", "device"):
        response = server.request("GET", f"/crl/{ca}.crl")
        assert response.status_code == 200
        findings[f"crl:{ca}"] = lint_crl(response.content)

    cert = x509.load_pem_x509_certificate(ldevid.read_bytes())
    issuer = x509.load_pem_x509_certificate((server.home / "public" / "device-ca.pem").read_bytes())
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = server.request(
        "POST", "/ocsp", content=request, headers={"content-type": "application/ocsp-request"}
    )
    assert response.status_code == 200
    findings["ocsp:ldevid"] = lint_ocsp_response(response.content)

    bad = {name: f for name, f in findings.items() if f}
    assert not bad, "\n".join(f"{name}: {f}" for name, fs in bad.items() for f in fs)
