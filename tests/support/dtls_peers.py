"""Reference DTLS 1.2 peers for the interop tests: ``openssl s_server -dtls1_2`` and a device
LDevID whose private key lives in a SoftHSM2 token.

``openssl s_server`` ends at end of file on its stdin, so :class:`OpensslDtlsServer` keeps a pipe
to it open; it is ready once it printed ``ACCEPT`` (a UDP port cannot be probed by connecting).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.certs import cert_builder
from trustfleet.sim.process import stop_group, wait_until

__all__ = [
    "CCM8_CIPHERS",
    "SOFTHSM_MODULE",
    "InteropCa",
    "LdevidToken",
    "OpensslDtlsServer",
    "ldevid_token",
    "read_token_secret",
]

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
CCM8_CIPHERS = "PSK-AES128-CCM8:@SECLEVEL=0"
"""The only cipher suite tinydtls (Wakaama) offers in PSK mode, as OpenSSL names it."""
READY_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class InteropCa:
    """A throwaway EC CA (test only: its key stays in memory, files hold the certificate)."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    pem: Path

    @classmethod
    def create(cls, folder: Path, *, cn: str = "interop-test-ca", now: datetime) -> InteropCa:
        """A CA valid around ``now``, its certificate written to ``folder/ca.pem``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            cert_builder(
                cn, key, not_before=now - timedelta(hours=1), not_after=now + timedelta(days=2)
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        pem = folder / "ca.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key=key, certificate=cert, pem=pem)

    def issue(
        self, cn: str, public_key: ec.EllipticCurvePublicKey, *, now: datetime
    ) -> x509.Certificate:
        """An end-entity certificate ``CN=<cn>`` for ``public_key``."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        return builder.sign(self.key, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class LdevidToken:
    """A SoftHSM2 token holding a device's EC key (generated inside) and its certificate.

    Attributes:
        softhsm_conf: The configuration file naming the token folder.
        key_uri: RFC 7512 URI of the private key (no PIN).
        pin: The user PIN (test only).
        certificate_der: The certificate, DER (libcoap wants DER next to a ``pkcs11:`` URI).
        certificate_pem: The same, PEM.
    """

    softhsm_conf: Path
    key_uri: str
    pin: str
    certificate_der: Path
    certificate_pem: Path


def _run(argv: list[str], *, env: dict[str, str]) -> None:
    subprocess.run(
        argv, env=env, check=True, capture_output=True, timeout=TOOL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ldevid_token(folder: Path, *, device_id: str, ca: InteropCa, now: datetime) -> LdevidToken:
    """Make a token in ``folder`` with a P-256 key generated inside it and an LDevID for it.

    The private key never leaves the token: pkcs11-tool generates it there and reads out the
    public half, which the CA certifies.
    """
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    pin, label = "4321", "ldevid"
    softhsm_util = shutil.which("softhsm2-util") or "softhsm2-util"
    pkcs11_tool = shutil.which("pkcs11-tool") or "pkcs11-tool"
    _run([softhsm_util, "--init-token", "--free", "--label", device_id, "--pin", pin,
          "--so-pin", "87654321"], env=env)  # fmt: skip
    base = [pkcs11_tool, "--module", str(SOFTHSM_MODULE), "--token-label", device_id,
            "--login", "--pin", pin]  # fmt: skip
    _run(
        [*base, "--keypairgen", "--key-type", "EC:prime256v1", "--label", label, "--id", "01"],
        env=env,
    )
    public_der = folder / "ldevid.pub.der"
    _run([*base, "--read-object", "--type", "pubkey", "--id", "01", "-o", str(public_der)], env=env)
    public_key = serialization.load_der_public_key(public_der.read_bytes())
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TypeError("the token made a non-EC key")
    cert = ca.issue(device_id, public_key, now=now)
    der, pem = folder / "ldevid.der", folder / "ldevid.pem"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _run(
        [*base, "--write-object", str(der), "--type", "cert", "--id", "01", "--label", label],
        env=env,
    )
    return LdevidToken(
        softhsm_conf=conf,
        key_uri=f"pkcs11:token={device_id};object={label};type=private",
        pin=pin,
        certificate_der=der,
        certificate_pem=pem,
    )


def read_token_secret(*, softhsm_conf: Path, pin: str, label: str) -> bytes:
    """The value of a readable secret-key object in a SoftHSM2 token (a device's PSK, as the
    device itself reads it), with ``pkcs11-tool``."""
    tool = shutil.which("pkcs11-tool") or "pkcs11-tool"
    done = subprocess.run(
        [tool, "--module", str(SOFTHSM_MODULE), "--login", "--pin", pin,
         "--read-object", "--type", "secrkey", "--label", label],
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm_conf)},
        capture_output=True, check=True, timeout=TOOL_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout


class OpensslDtlsServer:
    """``openssl s_server -dtls1_2`` on 127.0.0.1:``port`` in its own session, stdin held open.

    Args:
        port: The UDP port.
        log: Where its output goes (``-state``: handshake steps, the peer's subject, cipher, data).
        state: Log the handshake steps (``-state``; False for benchmarks).
        args: The mode's arguments, e.g. ``["-nocert", "-psk", HEX, "-cipher", CCM8_CIPHERS]``
            or ``["-cert", c, "-key", k, "-Verify", "2", "-CAfile", ca]``.
    """

    def __init__(self, port: int, *, log: Path, args: list[str], state: bool = True) -> None:
        self.port = port
        self.log = log
        verbosity = ["-state"] if state else []
        self.argv = [
            "openssl", "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", *verbosity, *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:  # the argv may hold a PSK: never shown
        return f"<OpensslDtlsServer 127.0.0.1:{self.port}>"

    def start(self) -> OpensslDtlsServer:
        """Start it; returns once it listens."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            self.wait_for("ACCEPT", timeout_s=READY_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def log_text(self) -> str:
        """What it printed so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, text: str, *, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``text`` appears in its output."""
        wait_until(lambda: text in self.log_text(), timeout_s=timeout_s, what=f"s_server {text!r}")

    def stop(self) -> int | None:
        """Stop its process group."""
        if self.proc is None:
            return None
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        return stop_group(self.proc)

    def __enter__(self) -> OpensslDtlsServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
