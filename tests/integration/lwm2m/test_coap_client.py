"""libcoap's coap-client-openssl against our LwM2M server in certificate mode.

The device's LDevID key stays in its SoftHSM2 token (libcoap loads it through the OpenSSL pkcs11
engine); the server's chain is checked against the home's CA bundle. The client reaches the
resource directory (a Register with its LDevID is accepted: the endpoint equals the CN); after
``device revoke`` the next handshake is refused (the CRL), before any CoAP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lwm2mkit import Lwm2mDevice, Lwm2mServer, provision_lwm2m

from support.coap_client import CoapResult, coap_request
from support.server import run_cli

pytestmark = pytest.mark.usefixtures("coap_client_installed")

LINKS = b"</1/0>,</3/0>,</3303/0>,</5/0>"


def _enrolled(srv: Lwm2mServer, tmp_path: Path) -> tuple[Lwm2mDevice, Path]:
    """A certificate-mode device with its LDevID (EST enrollment); its certificate as DER."""
    device = provision_lwm2m(srv, tmp_path / "devices", security="cert", bootstrap=False)
    enrolled = run_cli("agent", "enroll", "--device", device.directory)
    assert enrolled.returncode == 0, enrolled.stderr
    pem = (device.directory / "ldevid.pem").read_bytes()
    der = tmp_path / "ldevid.der"
    der.write_bytes(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
    return device, der


def _register(srv: Lwm2mServer, device: Lwm2mDevice, der: Path) -> CoapResult:
    return coap_request(
        f"coaps://127.0.0.1:{srv.port}/rd?ep={device.device_id}&lt=60&lwm2m=1.1&b=U",
        method="post", certificate=der,
        key_uri="pkcs11:token=tf-device;object=identity;type=private",
        pin=device.pin, server_ca=srv.server.ca_bundle, softhsm_conf=device.softhsm_conf,
        payload=LINKS, content_format=40,
    )  # fmt: skip


def test_coap_client_registers_with_ldevid_in_token(tmp_path: Path, srv: Lwm2mServer) -> None:
    device, der = _enrolled(srv, tmp_path)
    result = _register(srv, device, der)
    assert result.response_code() == "2.01", result.log
    reg = srv.wait(lambda: srv.live_registration(device.device_id), "registration")
    assert reg.mode == "cert"
    assert "/3303/0" in reg.objects
    assert not any(p.suffix == ".key" for p in device.directory.rglob("*"))


def test_coap_client_is_refused_at_the_handshake_after_revocation(
    tmp_path: Path, srv: Lwm2mServer
) -> None:
    device, der = _enrolled(srv, tmp_path)
    assert _register(srv, device, der).response_code() == "2.01"
    revoked = srv.server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
    assert revoked.returncode == 0, revoked.stderr
    srv.wait(lambda: srv.live_registration(device.device_id) is None, "registration dropped")
    # The parent publishes the new CRL into the broker's trust files within its revocation
    # poll; the LwM2M server reloads it at its next tick: until then a handshake may still
    # pass, and its Register is refused by the store (4.03). Bounded wait for the refusal.
    result = srv.wait(lambda: (r := _register(srv, device, der)).handshake_failed and r, "refusal")
    assert result.response_code() is None, result.log
