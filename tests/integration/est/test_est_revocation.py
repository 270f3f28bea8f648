"""Revocation seen from outside: CRLs and OCSP with openssl/curl, and re-enrollment refused.

``openssl ocsp -url https://…`` (OpenSSL 3.0) cannot speak TLS to the responder, so the
request is written with ``openssl ocsp -reqout``, POSTed with curl and checked with
``openssl ocsp -respin``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from support.server import (
    RunningServer,
    curl,
    enroll_software,
    make_csr_der,
    make_key,
    make_software_device,
    openssl,
    running_server,
)

pytestmark = pytest.mark.integration


def _serial_hex(cert: Path) -> str:
    out = openssl("x509", "-in", cert, "-noout", "-serial").decode()
    return out.strip().split("=", 1)[1].upper()


def _crl_text(server: RunningServer, ca: str, work: Path) -> str:
    path = work / f"{ca}.crl"
    result = curl("--fail", "--cacert", server.ca_bundle, "-o", path,
                  f"{server.base_url}/crl/{ca}.crl")  # fmt: skip
    assert result.returncode == 0, result.stderr
    issuer = server.home / "public" / f"{ca}-ca.pem"
    text = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-text", "-CAfile", issuer)
    return text.decode().replace(":", "").upper()


def _ocsp_status(server: RunningServer, cert: Path, work: Path) -> str:
    issuer = server.home / "public" / "device-ca.pem"
    request = work / "ocsp.req"
    openssl("ocsp", "-issuer", issuer, "-cert", cert, "-reqout", request)
    response = work / "ocsp.resp"
    result = curl(
        "--fail", "--cacert", server.ca_bundle,
        "-H", "Content-Type: application/ocsp-request",
        "--data-binary", f"@{request}", "-o", response,
        f"{server.base_url}/ocsp",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = openssl(
        "ocsp", "-respin", response, "-no_nonce",
        "-CAfile", server.home / "public" / "root-ca.pem",
        "-VAfile", issuer, "-issuer", issuer, "-cert", cert,
    )  # fmt: skip
    # The responder echoes the request's nonce (checked here: with -cert, openssl ocsp builds a
    # new request with a fresh nonce, so -reqin cannot be combined with -respin).
    nonce = x509.OCSPNonce
    asked = ocsp.load_der_ocsp_request(request.read_bytes()).extensions
    answered = ocsp.load_der_ocsp_response(response.read_bytes()).extensions
    assert asked.get_extension_for_class(nonce) == answered.get_extension_for_class(nonce)
    return out.decode()


def _enroll_revoke_refuse(server: RunningServer, work: Path) -> None:
    device = make_software_device(server, work)
    ldevid, key = enroll_software(server, device, work)
    assert f"{ldevid}: good" in _ocsp_status(server, ldevid, work)

    result = server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr

    assert _serial_hex(ldevid).lstrip("0") in _crl_text(server, "device", work)
    assert _serial_hex(device.idevid).lstrip("0") in _crl_text(server, "manufacturing", work)
    status = _ocsp_status(server, ldevid, work)
    assert f"{ldevid}: revoked" in status
    assert "Reason: keyCompromise" in status

    body = base64.b64encode(make_csr_der(make_key(work / "again.key"), cn=device.device_id))
    response = server.est("simplereenroll", body, cert=ldevid, key=key)
    assert response.status_code == 403
    assert response.headers["x-trustfleet-error"] == "est.auth.revoked"
    assert server.cli_json("device", "show", device.device_id)["state"] == "revoked"


def test_revoked_device_is_on_the_crls_revoked_in_ocsp_and_refused(
    server: RunningServer, work: Path
) -> None:
    _enroll_revoke_refuse(server, work)


@pytest.mark.postgres
def test_enroll_revoke_refuse_on_postgresql(tmp_path: Path, postgres_db_url: str) -> None:
    with running_server(tmp_path, store_url=postgres_db_url) as server:
        assert "postgresql" in (server.home / "trustfleet.toml").read_text()
        _enroll_revoke_refuse(server, tmp_path)
        with server.runtime.uow.begin() as tx:
            types = [e.type for e in tx.events.list(limit=1000)]
        assert "device.enrolled" in types
        assert types[-1] == "enrollment.refused"
