"""The DTLS client against ``openssl s_server -dtls1_2``: PSK suites, a token key, refusals."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import aio
from trustfleet.errors import TrustFleetError, Unavailable, VerificationFailed
from trustfleet.keystore import (
    find_module,
    init_token,
    open_token,
    write_pin_file,
    write_softhsm_conf,
)
from trustfleet.lwm2m.dtls_client import DtlsClient, DtlsClientConfig, handshake_once

PSK = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENTITY = "dev-00000001"
PIN = "1234-device"


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SServer:
    """``openssl s_server -dtls1_2`` in its own process group; echoes one line on request."""

    def __init__(self, args: list[str]) -> None:
        self.port = _udp_port()
        self.process = subprocess.Popen(
            ["openssl", "s_server", "-dtls1_2", "-accept", str(self.port), "-quiet", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def reply(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def s_server() -> Iterator[list[SServer]]:
    started: list[SServer] = []
    yield started
    for server in started:
        server.stop()


def _start(started: list[SServer], args: list[str]) -> SServer:
    server = SServer(args)
    started.append(server)
    return server


async def _connect_with_retry(config: DtlsClientConfig) -> DtlsClient:
    """Connect, retrying while s_server has not bound its port yet (ICMP port unreachable)."""
    for _ in range(50):
        client = DtlsClient(config)
        try:
            await client.connect()
        except Unavailable as exc:
            if exc.code != "lwm2m.dtls.unreachable":
                raise
            await asyncio.sleep(0.1)
            continue
        return client
    raise AssertionError("s_server never listened")


async def _handshake_with_retry(config: DtlsClientConfig) -> None:
    client = await _connect_with_retry(config)
    await client.close()


def _psk_config(port: int, cipher: str, key: bytes = PSK) -> DtlsClientConfig:
    return DtlsClientConfig(
        host="127.0.0.1",
        port=port,
        ciphers=(cipher,),
        psk_identity=IDENTITY,
        psk_key=key,
        handshake_timeout_s=8,
    )


@pytest.mark.parametrize(
    "cipher",
    ["PSK-AES128-CCM8:@SECLEVEL=0", "PSK-AES128-GCM-SHA256", "ECDHE-PSK-AES128-CBC-SHA256"],
    ids=["ccm8", "gcm", "ecdhe-psk-cbc"],
)
def test_psk_echo(s_server: list[SServer], cipher: str) -> None:
    server = _start(
        s_server, ["-nocert", "-psk", PSK.hex(), "-psk_identity", IDENTITY, "-cipher", cipher]
    )

    async def run() -> tuple[str, bytes]:
        client = await _connect_with_retry(_psk_config(server.port, cipher))
        try:
            await client.send(b"ping\n")
            server.reply(b"pong\n")
            return client.cipher, await client.recv(timeout_s=5)
        finally:
            await client.close()

    negotiated, answer = aio.run(run())
    assert negotiated == cipher.split(":", maxsplit=1)[0]
    assert answer == b"pong\n"


def test_bad_psk_never_connects(s_server: list[SServer]) -> None:
    cipher = "PSK-AES128-GCM-SHA256"
    server = _start(
        s_server, ["-nocert", "-psk", PSK.hex(), "-psk_identity", IDENTITY, "-cipher", cipher]
    )
    config = DtlsClientConfig(
        host="127.0.0.1",
        port=server.port,
        ciphers=(cipher,),
        psk_identity=IDENTITY,
        psk_key=bytes(16),
        handshake_timeout_s=3,
    )
    with pytest.raises(TrustFleetError) as caught:
        aio.run(_handshake_with_retry(config))
    # DTLS drops records that fail their MAC: the server's Finished never comes.
    assert caught.value.code in {"lwm2m.dtls.refused", "lwm2m.dtls.timeout"}
    assert PSK.hex() not in repr(config) and "psk_key" not in repr(config)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, public_key: ec.EllipticCurvePublicKey, issuer: str, signer: object, *, ca: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]  # EC key or token key


class CertSetup:
    def __init__(self, root: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = root / "ca.pem"
        self.ca.write_bytes(
            _cert("test-ca", ca_key.public_key(), "test-ca", ca_key, ca=True).public_bytes(
                serialization.Encoding.PEM
            )
        )
        other_key = ec.generate_private_key(ec.SECP256R1())
        self.other_ca = root / "other-ca.pem"
        self.other_ca.write_bytes(
            _cert("other-ca", other_key.public_key(), "other-ca", other_key, ca=True).public_bytes(
                serialization.Encoding.PEM
            )
        )
        # The s_server test key is a throwaway of this test's server (never a device or CA key).
        server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_cert = root / "server.pem"
        self.server_cert.write_bytes(
            _cert("localhost", server_key.public_key(), "test-ca", ca_key, ca=False).public_bytes(
                serialization.Encoding.PEM
            )
        )
        self.server_key = root / "server.key"
        self.server_key.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.module = find_module()
        self.conf = write_softhsm_conf(root / "softhsm2.conf", token_dir=root / "tokens")
        init_token(
            module=self.module, conf=self.conf, label="device", so_pin="so-pin-1234", user_pin=PIN
        )
        with open_token(module=self.module, label="device", pin=PIN, conf=self.conf) as token:
            key = token.generate_ec_key("identity", curve="P-256")
            device = _cert(IDENTITY, key.public_key(), "test-ca", ca_key, ca=False)
        self.device_cert = root / "ldevid.pem"
        self.device_cert.write_bytes(device.public_bytes(serialization.Encoding.PEM))
        self.pin_file = write_pin_file(root / "pin", PIN)

    def config(self, port: int, *, ca_file: Path) -> DtlsClientConfig:
        return DtlsClientConfig(
            host="127.0.0.1",
            port=port,
            ciphers=("ECDHE-ECDSA-AES128-GCM-SHA256",),
            certificate=self.device_cert,
            key_uri=f"pkcs11:token=device;object=identity;type=private?pin-source=file:{self.pin_file}",
            module=self.module,
            softhsm_conf=self.conf,
            ca_file=ca_file,
            handshake_timeout_s=8,
        )

    def server_args(self) -> list[str]:
        return [
            "-cert",
            str(self.server_cert),
            "-key",
            str(self.server_key),
            "-Verify",
            "1",
            "-CAfile",
            str(self.ca),
            "-verify_return_error",
        ]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSetup:
    # One token per process, like the simulated device: SoftHSM2 is one library instance per
    # process, shared by python-pkcs11 and the pkcs11 engine, configured once.
    return CertSetup(tmp_path_factory.mktemp("dtls-certs"))


def test_certificate_with_token_key(s_server: list[SServer], certs: CertSetup) -> None:
    server = _start(s_server, certs.server_args())

    async def run() -> bytes:
        client = await _connect_with_retry(certs.config(server.port, ca_file=certs.ca))
        try:
            await client.send(b"ping\n")
            server.reply(b"pong\n")
            return await client.recv(timeout_s=5)
        finally:
            await client.close()

    assert aio.run(run()) == b"pong\n"
    # s_server accepts the next session once the first closed: the benchmark's unit of work.
    aio.run(handshake_once(certs.config(server.port, ca_file=certs.ca)))


def test_wrong_server_ca_refused(s_server: list[SServer], certs: CertSetup) -> None:
    server = _start(s_server, certs.server_args())
    with pytest.raises(VerificationFailed) as caught:
        aio.run(_handshake_with_retry(certs.config(server.port, ca_file=certs.other_ca)))
    assert caught.value.code == "lwm2m.dtls.server_unverified"
