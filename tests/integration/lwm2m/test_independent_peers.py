"""The independent peers themselves, against OpenSSL's DTLS server (no TrustFleet server).

These prove the harness before the product is in the loop: Wakaama's tinydtls client completes
a PSK handshake with ``openssl s_server -dtls1_2`` (the one suite it offers, PSK-AES128-CCM8)
and sends its LwM2M Register; coap-client-openssl presents an LDevID whose key is in a SoftHSM2
token, and the server sees its subject; a certificate from another CA is refused.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.coap_client import coap_request
from support.dtls_peers import CCM8_CIPHERS, InteropCa, OpensslDtlsServer, ldevid_token
from support.wakaama import WakaamaClient, free_udp_port
from trustfleet.sim.process import wait_until

DEVICE_ID = "dev-interop-0001"


def test_wakaama_handshakes_psk_ccm8_and_registers(tmp_path: Path, wakaama_binary: Path) -> None:
    key = secrets.token_bytes(16)
    port = free_udp_port()
    server_args = [
        "-nocert",
        "-psk",
        key.hex(),
        "-psk_identity",
        DEVICE_ID,
        "-cipher",
        CCM8_CIPHERS,
    ]
    with OpensslDtlsServer(port, log=tmp_path / "s_server.log", args=server_args) as server:
        client = WakaamaClient(
            wakaama_binary, server_port=port, endpoint=DEVICE_ID, psk_identity=DEVICE_ID,
            psk_key=key, log=tmp_path / "wakaama.log", local_port=free_udp_port(),
        )  # fmt: skip
        with client:
            server.wait_for(f"ep={DEVICE_ID}")
        text = server.log_text()
    assert "CIPHER is PSK-AES128-CCM8" in text
    assert "lwm2m=1.1" in text
    assert "</3/0>" in text and "</5/0>" in text
    assert key.hex() not in client.log_text()
    assert key.hex() not in repr(client)


def test_wakaama_wrong_psk_gets_no_session(tmp_path: Path, wakaama_binary: Path) -> None:
    port = free_udp_port()
    server_args = [
        "-nocert",
        "-psk",
        "00" * 16,
        "-psk_identity",
        DEVICE_ID,
        "-cipher",
        CCM8_CIPHERS,
    ]
    with OpensslDtlsServer(port, log=tmp_path / "s_server.log", args=server_args) as server:
        client = WakaamaClient(
            wakaama_binary, server_port=port, endpoint=DEVICE_ID, psk_identity=DEVICE_ID,
            psk_key=b"\x01" * 16, log=tmp_path / "wakaama.log", local_port=free_udp_port(),
        )  # fmt: skip
        with client:
            server.wait_for("read client key exchange")
            # A Finished under the wrong key is dropped silently (RFC 6347 4.1.2.7): the client
            # retransmits its flight and gets the server's again; wait for two such rounds.
            wait_until(
                lambda: client.log_text().count("bytes received from") >= 4,
                timeout_s=60, what="two handshake retransmissions",
            )  # fmt: skip
        text = server.log_text()
    assert "read finished" not in text
    assert f"ep={DEVICE_ID}" not in text
    assert "STATE_READY" not in client.states()


@pytest.mark.usefixtures("coap_client_installed")
def test_coap_client_presents_ldevid_from_token(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = InteropCa.create(tmp_path / "ca", now=now)
    server_key, server_cert = _server_files(tmp_path, ca, now=now)
    token = ldevid_token(tmp_path / "device", device_id=DEVICE_ID, ca=ca, now=now)
    port = free_udp_port()
    args = [
        "-cert",
        str(server_cert),
        "-key",
        str(server_key),
        "-Verify",
        "2",
        "-verify_return_error",
        "-CAfile",
        str(ca.pem),
    ]
    with OpensslDtlsServer(port, log=tmp_path / "s_server.log", args=args) as server:
        result = coap_request(
            f"coaps://127.0.0.1:{port}/rd", certificate=token.certificate_der,
            key_uri=token.key_uri, pin=token.pin, server_ca=ca.pem,
            softhsm_conf=token.softhsm_conf, wait_s=1,
        )  # fmt: skip
        server.wait_for(f"subject=CN = {DEVICE_ID}")
    assert "c:GET" in result.log  # the request went out inside the session
    assert not (tmp_path / "device" / "ldevid.key").exists()


@pytest.mark.usefixtures("coap_client_installed")
def test_coap_client_from_another_ca_is_refused(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = InteropCa.create(tmp_path / "ca", now=now)
    stranger = InteropCa.create(tmp_path / "stranger", cn="stranger-ca", now=now)
    server_key, server_cert = _server_files(tmp_path, ca, now=now)
    token = ldevid_token(tmp_path / "device", device_id=DEVICE_ID, ca=stranger, now=now)
    port = free_udp_port()
    args = [
        "-cert",
        str(server_cert),
        "-key",
        str(server_key),
        "-Verify",
        "2",
        "-verify_return_error",
        "-CAfile",
        str(ca.pem),
    ]
    with OpensslDtlsServer(port, log=tmp_path / "s_server.log", args=args) as server:
        result = coap_request(
            f"coaps://127.0.0.1:{port}/rd", certificate=token.certificate_der,
            key_uri=token.key_uri, pin=token.pin, server_ca=ca.pem,
            softhsm_conf=token.softhsm_conf, wait_s=1,
        )  # fmt: skip
        server.wait_for("ERROR")
        assert f"subject=CN = {DEVICE_ID}" not in server.log_text()
    assert result.handshake_failed
    assert result.response_code() is None


def _server_files(tmp_path: Path, ca: InteropCa, *, now: datetime) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue("lwm2m-server", key.public_key(), now=now)
    key_file, cert_file = tmp_path / "server.key", tmp_path / "server.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file
