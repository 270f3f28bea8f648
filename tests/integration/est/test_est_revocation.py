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
    StoreSnapshot,
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


def _ocsp_status(server: RunningServer, cert: Path, work: Path, *, ca: str = "device") -> str:
    issuer = server.home / "public" / f"{ca}-ca.pem"
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


def _curl_reenroll(server: RunningServer, cert: Path, key: Path, body: Path) -> tuple[int, str]:
    result = curl(
        "--cacert", server.ca_bundle, "--cert", cert, "--key", key,
        "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{body}",
        "-w", "\n%{http_code}", f"{server.base_url}/.well-known/est/simplereenroll",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text, _, status = result.stdout.decode().rpartition("\n")
    return int(status), text


def test_superseded_ldevid_is_revoked_in_ocsp_and_crl_and_cannot_renew(
    server: RunningServer, work: Path
) -> None:
    """Issue 9 §4: renewal supersedes; the old LDevID is revoked (superseded) to openssl, and
    curl renewing with it is refused."""
    device = make_software_device(server, work)
    first, first_key = enroll_software(server, device, work)
    second, _ = enroll_software(
        server, device, work, operation="simplereenroll", cert=first, key=first_key
    )

    status = _ocsp_status(server, first, work)
    assert f"{first}: revoked" in status
    assert "Reason: superseded" in status
    assert f"{second}: good" in _ocsp_status(server, second, work)
    crl = _crl_text(server, "device", work)
    assert _serial_hex(first).lstrip("0") in crl
    assert "SUPERSEDED" in crl
    assert _serial_hex(second).lstrip("0") not in crl

    body = work / "again.b64"
    body.write_bytes(base64.b64encode(make_csr_der(make_key(work / "a.key"), cn=device.device_id)))
    code, text = _curl_reenroll(server, first, first_key, body)
    assert code == 403, text
    assert "superseded" in text
    shown = server.cli_json("device", "show", device.device_id)
    valid = [c for c in shown["certificates"] if c["kind"] == "ldevid" and c["status"] == "valid"]
    assert [c["serial"] for c in valid] == [_serial_hex(second).lstrip("0").lower()]


def test_ocsp_answers_for_idevids_signed_by_the_manufacturing_ca(
    server: RunningServer, work: Path
) -> None:
    """Issue 9 §4: the responder answers for IDevIDs too (good, then revoked), checked by
    ``openssl ocsp`` against the manufacturing CA as the signer."""
    device = make_software_device(server, work)
    # IDevIDs name the responder in their AIA, as LDevIDs do.
    uri = openssl("x509", "-in", device.idevid, "-noout", "-ocsp_uri").decode().strip()
    assert uri.startswith("https://") and uri.endswith("/ocsp"), uri
    assert f"{device.idevid}: good" in _ocsp_status(server, device.idevid, work, ca="manufacturing")

    result = server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    status = _ocsp_status(server, device.idevid, work, ca="manufacturing")
    assert f"{device.idevid}: revoked" in status
    assert "Reason: keyCompromise" in status


def test_reopen_allows_one_idevid_enrollment_from_the_cli(
    server: RunningServer, work: Path
) -> None:
    device = make_software_device(server, work)
    first, _ = enroll_software(server, device, work)
    body = base64.b64encode(make_csr_der(make_key(work / "b.key"), cn=device.device_id))
    refused = server.est("simpleenroll", body, cert=device.idevid, key=device.key)
    assert refused.status_code == 403
    assert refused.headers["x-trustfleet-error"] == "est.auth.already_enrolled"

    opened = server.cli_json("device", "reopen", device.device_id, "--reason", "reflashed")
    assert opened["device_id"] == device.device_id and opened["already_open"] is False
    second, _ = enroll_software(server, device, work)
    again = server.est("simpleenroll", body, cert=device.idevid, key=device.key)
    assert again.status_code == 403
    assert f"{first}: revoked" in _ocsp_status(server, first, work)
    assert f"{second}: good" in _ocsp_status(server, second, work)
    types = [e.type for e in server.events_since(StoreSnapshot(0, {}, 0))]
    assert "device.reopened" in types and "certificate.superseded" in types

    manufactured = make_software_device(server, work)
    result = server.cli("device", "reopen", manufactured.device_id)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_enroll_revoke_refuse_on_postgresql(tmp_path: Path, postgres_db_url: str) -> None:
    with running_server(tmp_path, store_url=postgres_db_url) as server:
        assert "postgresql" in (server.home / "trustfleet.toml").read_text()
        _enroll_revoke_refuse(server, tmp_path)
        with server.runtime.uow.begin() as tx:
            types = [e.type for e in tx.events.list(limit=1000)]
        assert "device.enrolled" in types
        assert types[-1] == "enrollment.refused"


NONCES = {"1-octet": (1, True), "32-octets": (32, True), "empty": (0, False),
          "33-octets": (33, False), "128-octets": (128, False)}  # fmt: skip


@pytest.mark.parametrize("name", list(NONCES), ids=list(NONCES))
def test_ocsp_nonce_bounds_over_https(server: RunningServer, work: Path, name: str) -> None:
    """RFC 8954 at the endpoint: nonces of 1-32 octets echoed, others malformedRequest."""
    from trustfleet.pki import ocsp_request_for

    length, accepted = NONCES[name]
    device = make_software_device(server, work)
    issuer = x509.load_pem_x509_certificate(
        (server.home / "public" / "manufacturing-ca.pem").read_bytes()
    )
    cert = x509.load_pem_x509_certificate(device.idevid.read_bytes())
    nonce = bytes(range(1, length + 1))
    body = ocsp_request_for(cert, issuer, nonce=nonce)
    response = server.request(
        "POST", "/ocsp", content=body, headers={"content-type": "application/ocsp-request"}
    )
    assert response.status_code == 200
    answer = ocsp.load_der_ocsp_response(response.content)
    if not accepted:
        assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        return
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
