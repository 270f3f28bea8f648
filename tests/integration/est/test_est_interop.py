"""EST (RFC 7030) against independent clients: system openssl and curl, software and PKCS#11 keys.

The PKCS#11 case uses OpenSSL's pkcs11 engine (libp11 0.4.12): the CSR is signed and the TLS
CertificateVerify is made inside the device's SoftHSM2 token. The PIN reaches the engine
through an OpenSSL configuration file (mode 0600), never through argv. libp11 0.4.12 cannot
use ``pin-source=file:`` here: it reads at most 31 characters of the PIN file, and TrustFleet
PINs are 32 characters (see docs/est.md).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from support.server import (
    RunningServer,
    curl,
    make_csr_der,
    make_key,
    make_software_device,
    openssl,
)

pytestmark = pytest.mark.integration

ENGINE_SO = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")
DEVICE_KEY_URI = "pkcs11:token=tf-device;object=identity;type=private"


def _curl_est(
    server: RunningServer,
    operation: str,
    body: Path,
    *args: str | Path,
    env: dict[str, str] | None = None,
) -> bytes:
    result = curl(
        "--fail-with-body",
        "--cacert", server.ca_bundle,
        *args,
        "-H", "Content-Type: application/pkcs10",
        "--data-binary", f"@{body}",
        f"{server.base_url}/.well-known/est/{operation}",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")
    return result.stdout


def _print_certs(pkcs7_base64: bytes, out: Path) -> Path:
    """``openssl pkcs7 -print_certs`` on an EST certs-only body; the PEM file it wrote."""
    der = out.with_suffix(".p7b")
    der.write_bytes(base64.b64decode(pkcs7_base64))
    openssl("pkcs7", "-inform", "DER", "-in", der, "-print_certs", "-out", out)
    return out


def _x509_text(cert: Path) -> str:
    return openssl(
        "x509", "-in", cert, "-noout", "-subject", "-issuer", "-serial",
        "-ext", "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints",
        "-nameopt", "RFC2253",
    ).decode()  # fmt: skip


def _verify(server: RunningServer, cert: Path, ca_name: str) -> None:
    out = openssl(
        "verify", "-CAfile", server.home / "public" / "root-ca.pem",
        "-untrusted", server.home / "public" / f"{ca_name}-ca.pem", cert,
    )  # fmt: skip
    assert out.decode().strip().endswith("OK")


def _check_ldevid(server: RunningServer, cert: Path, device_id: str) -> str:
    text = _x509_text(cert)
    assert f"subject=CN={device_id},O=TrustFleet" in text
    assert "issuer=CN=TrustFleet Device CA,O=TrustFleet" in text
    assert f"URI:urn:trustfleet:device:{device_id}" in text
    assert "TLS Web Client Authentication" in text
    assert "TLS Web Server Authentication" not in text
    assert "CA:TRUE" not in text
    _verify(server, cert, "device")
    serial = re.search(r"serial=([0-9A-F]+)", text)
    assert serial
    return serial.group(1)


def test_cacerts_with_curl(server: RunningServer, work: Path) -> None:
    result = curl("--fail", "--cacert", server.ca_bundle,
                  f"{server.base_url}/.well-known/est/cacerts")  # fmt: skip
    assert result.returncode == 0, result.stderr
    pem = _print_certs(result.stdout, work / "cacerts.pem").read_bytes()
    got = {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(pem)}
    expected = {
        x509.load_pem_x509_certificate(
            (server.home / "public" / f"{name}-ca.pem").read_bytes()
        ).fingerprint(hashes.SHA256())
        for name in ("device", "root")
    }
    assert got == expected


def test_software_key_enroll_then_reenroll_with_openssl_and_curl(
    server: RunningServer, work: Path
) -> None:
    device = make_software_device(server, work)
    # simpleenroll: authenticated by the IDevID, for a second, new key.
    key = make_key(work / "ldevid.key")
    body = work / "enroll.b64"
    body.write_bytes(base64.b64encode(make_csr_der(key, cn=device.device_id)))
    response = _curl_est(server, "simpleenroll", body, "--cert", device.idevid, "--key", device.key)
    ldevid = _print_certs(response, work / "ldevid.pem")
    first_serial = _check_ldevid(server, ldevid, device.device_id)
    assert openssl("x509", "-in", ldevid, "-noout", "-pubkey") == openssl(
        "pkey", "-in", key, "-pubout"
    )
    # simplereenroll: authenticated by the LDevID just issued.
    key2 = make_key(work / "ldevid2.key")
    body2 = work / "reenroll.b64"
    body2.write_bytes(base64.b64encode(make_csr_der(key2, cn=device.device_id)))
    response2 = _curl_est(server, "simplereenroll", body2, "--cert", ldevid, "--key", key)
    second_serial = _check_ldevid(server, _print_certs(response2, work / "ldevid2.pem"),
                                  device.device_id)  # fmt: skip
    assert second_serial != first_serial
    assert server.cli_json("device", "show", device.device_id)["state"] == "enrolled"


@pytest.fixture
def hsm_device(server: RunningServer, work: Path) -> tuple[str, Path, dict[str, str]]:
    """A provisioned virtual device and the environment that lets openssl/curl use its key."""
    if not ENGINE_SO.exists():
        pytest.skip(f"OpenSSL pkcs11 engine not installed ({ENGINE_SO})")
    from trustfleet.keystore import find_module

    (device,) = server.cli_json("factory", "provision", "--out", work / "devices", "--count", "1")[
        "devices"
    ]
    device_dir = Path(device["directory"])
    if not device_dir.is_absolute():
        device_dir = Path.cwd() / device_dir
    pin = (device_dir / "secrets" / "token.pin").read_text().strip()
    conf = work / "engine.cnf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            "openssl_conf = openssl_init\n"
            "[openssl_init]\nengines = engine_section\n"
            "[engine_section]\npkcs11 = pkcs11_section\n"
            "[pkcs11_section]\nengine_id = pkcs11\n"
            f"dynamic_path = {ENGINE_SO}\n"
            f"MODULE_PATH = {find_module(None)}\n"
            f"PIN = {pin}\ninit = 0\n"
        )
    env = {"OPENSSL_CONF": str(conf), "SOFTHSM2_CONF": str(device_dir / "softhsm2.conf")}
    return device["device_id"], device_dir, env


def _token_csr(device_id: str, env: dict[str, str]) -> bytes:
    """A DER CSR for ``device_id`` signed inside the device's token (OpenSSL's pkcs11 engine)."""
    return openssl(
        "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key", DEVICE_KEY_URI,
        "-subj", f"/CN={device_id}", "-outform", "DER", env=env,
    )  # fmt: skip


def test_pkcs11_key_enroll_with_openssl_engine_and_curl(
    server: RunningServer, work: Path, hsm_device: tuple[str, Path, dict[str, str]]
) -> None:
    device_id, device_dir, env = hsm_device
    csr = _token_csr(device_id, env)
    body = work / "hsm.b64"
    body.write_bytes(base64.b64encode(csr))
    response = _curl_est(
        server, "simpleenroll", body,
        "--engine", "pkcs11", "--key-type", "ENG", "--key", DEVICE_KEY_URI,
        "--cert", device_dir / "idevid.pem",
        env=env,
    )  # fmt: skip
    ldevid = _print_certs(response, device_dir / "ldevid.pem")
    first = _check_ldevid(server, ldevid, device_id)
    # The LDevID certifies the token's key, which never left it.
    assert openssl("x509", "-in", ldevid, "-noout", "-pubkey") == openssl(
        "x509", "-in", device_dir / "idevid.pem", "-noout", "-pubkey"
    )
    # Re-enroll with the same token key, now authenticated by the LDevID.
    response2 = _curl_est(
        server, "simplereenroll", body,
        "--engine", "pkcs11", "--key-type", "ENG", "--key", DEVICE_KEY_URI, "--cert", ldevid,
        env=env,
    )  # fmt: skip
    second = _check_ldevid(server, _print_certs(response2, work / "ldevid2.pem"), device_id)
    assert second != first
    assert server.cli_json("device", "show", device_id)["state"] == "enrolled"


def test_pkcs11_key_enroll_with_openssl_s_client(
    server: RunningServer, work: Path, hsm_device: tuple[str, Path, dict[str, str]]
) -> None:
    """The same enrollment with HTTP/1.1 written by hand over ``openssl s_client -engine``."""
    device_id, device_dir, env = hsm_device
    csr = _token_csr(device_id, env)
    body = base64.b64encode(csr)
    request = (
        b"POST /.well-known/est/simpleenroll HTTP/1.1\r\n"
        + f"Host: localhost:{server.port}\r\n".encode()
        + b"Content-Type: application/pkcs10\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    out = openssl(
        "s_client", "-quiet", "-connect", f"localhost:{server.port}", "-servername", "localhost",
        "-CAfile", server.ca_bundle, "-verify_return_error",
        "-engine", "pkcs11", "-keyform", "engine", "-key", DEVICE_KEY_URI,
        "-cert", device_dir / "idevid.pem",
        env=env, input_bytes=request,
    )  # fmt: skip
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    _check_ldevid(server, _print_certs(payload.strip(), work / "s_client.pem"), device_id)


def test_every_connection_is_served(server: RunningServer) -> None:
    """Regression: a listening probe socket in the parent took a share of SO_REUSEPORT
    connections and never accepted them, so about every second connection hung."""
    ctx = ssl.create_default_context(cafile=str(server.ca_bundle))
    for _ in range(24):
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
