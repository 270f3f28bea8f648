"""A DTLS 1.2 client over the system libssl for LwM2M devices: PSK, or a certificate whose key
stays in a PKCS#11 token (docs/lwm2m.md, "Clients and interop").

One connected UDP socket in asyncio; libssl works on memory BIOs and never touches the socket;
retransmission follows libssl's DTLS timer (``DTLSv1_get_timeout``/``DTLSv1_handle_timeout``).
OpenSSL's errors are translated into TrustFleet errors once, in :func:`_translate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import Unavailable, VerificationFailed
from trustfleet.keystore import PinSource, Pkcs11Uri
from trustfleet.lwm2m._dtls_conn import Credentials, SslConnection
from trustfleet.lwm2m._libssl import SSL_ERROR_WANT_READ, SSL_ERROR_ZERO_RETURN, LibsslError

__all__ = ["DtlsClient", "DtlsClientConfig", "handshake_once"]

logger = logging.getLogger(__name__)

MAX_QUEUED_DATAGRAMS = 64
"""Datagrams received but not yet read; more are dropped (the peer retransmits)."""
_REFUSAL_MARKERS = ("alert", "decrypt", "bad record mac", "handshake failure", "unknown psk")


@dataclass(frozen=True, slots=True, kw_only=True)
class DtlsClientConfig:
    """Where to connect and how to authenticate.

    Attributes:
        host: The server's address.
        port: The server's UDP port.
        ciphers: OpenSSL cipher names (joined with ':'; add ``@SECLEVEL=0`` for CCM8 if needed).
        psk_identity: The PSK identity (PSK mode).
        psk_key: The pre-shared key (PSK mode; never logged nor in the repr).
        certificate: The device certificate chain, PEM (certificate mode).
        key_uri: RFC 7512 URI of the identity key; a ``pin-source`` query gives the PIN file.
        module: The PKCS#11 module (SoftHSM2's by default in the engine).
        softhsm_conf: The token's SoftHSM2 configuration, set for this process.
        ca_file: The CAs the server's certificate must chain to (None: no verification, PSK).
        handshake_timeout_s: The whole handshake's time bound.
        mtu_bytes: The largest datagram sent.
        max_record_bytes: The largest plaintext accepted.
    """

    host: str
    port: int
    ciphers: tuple[str, ...]
    psk_identity: str | None = None
    psk_key: bytes | None = None
    certificate: Path | None = None
    key_uri: str | None = None
    module: Path | None = None
    softhsm_conf: Path | None = None
    ca_file: Path | None = None
    handshake_timeout_s: float = 10
    mtu_bytes: int = 1280
    max_record_bytes: int = 16_384

    def __repr__(self) -> str:
        return (
            f"DtlsClientConfig(host={self.host!r}, port={self.port}, "
            f"psk_identity={self.psk_identity!r}, certificate={self.certificate})"
        )


def _credentials(config: DtlsClientConfig) -> Credentials:
    pin = None
    key_uri = config.key_uri
    if key_uri is not None and "pin-source=" in key_uri:
        uri = Pkcs11Uri.parse(key_uri)
        if uri.pin_source is not None:
            pin = PinSource.parse(uri.pin_source).read()
        key_uri = key_uri.split("?", 1)[0]
    return Credentials(
        ciphers=":".join(config.ciphers),
        psk_identity=config.psk_identity,
        psk_key=config.psk_key,
        certificate=config.certificate,
        key_uri=key_uri,
        pin=pin,
        module=config.module,
        softhsm_conf=config.softhsm_conf,
        ca_file=config.ca_file,
    )


def _translate(error: LibsslError, *, server: str) -> Unavailable | VerificationFailed:
    text = "; ".join(error.reasons).lower()
    if "certificate verify failed" in text:
        return VerificationFailed(
            f"the DTLS server {server} did not prove a trusted certificate",
            hint="check [lwm2m] server CA file",
            code="lwm2m.dtls.server_unverified",
        )
    if any(marker in text for marker in _REFUSAL_MARKERS):
        return VerificationFailed(
            f"the DTLS server {server} refused the handshake",
            hint="check the device's PSK or certificate and that it is not revoked",
            code="lwm2m.dtls.refused",
        )
    return Unavailable(
        f"DTLS with {server} failed while {error.action}",
        hint="; ".join(error.reasons)[:300] or None,
        code="lwm2m.dtls.failed",
    )


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED_DATAGRAMS)
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        logger.debug("DTLS client socket error: %s", exc)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(b"")  # wakes the reader: ICMP said nobody listens there


class DtlsClient:
    """An async DTLS 1.2 client over one connected UDP socket.

    Args:
        config: The server and the credentials.
    """

    def __init__(self, config: DtlsClientConfig) -> None:
        self._config = config
        self._server = f"{config.host}:{config.port}"
        self._conn: SslConnection | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Datagrams | None = None

    @property
    def cipher(self) -> str:
        """The negotiated cipher suite ('' before the handshake)."""
        return self._conn.cipher() if self._conn is not None else ""

    async def connect(self) -> None:
        """Open the socket and complete the handshake.

        Raises:
            VerificationFailed: The server refused us, or its certificate did not verify.
            Unavailable: No answer within the handshake timeout, or libssl failed.
        """
        try:
            self._conn = SslConnection(_credentials(self._config), mtu_bytes=self._config.mtu_bytes)
        except LibsslError as exc:
            raise _translate(exc, server=self._server) from exc
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(self._config.host, self._config.port)
        )
        self._transport, self._protocol = transport, protocol
        try:
            await asyncio.wait_for(self._handshake(), self._config.handshake_timeout_s)
        except TimeoutError as exc:
            await self.close()
            raise Unavailable(
                f"no DTLS handshake with {self._server} "
                f"within {self._config.handshake_timeout_s} s",
                hint="is the LwM2M server running and reachable over UDP?",
                code="lwm2m.dtls.timeout",
            ) from exc
        except (VerificationFailed, Unavailable):
            await self.close()
            raise

    async def _handshake(self) -> None:
        conn = self._require()
        while True:
            result, error = conn.handshake()
            self._flush()
            if result == 1:
                logger.debug("DTLS handshake with %s done (%s)", self._server, conn.cipher())
                return
            if error != SSL_ERROR_WANT_READ:
                reason = conn.verify_error()
                exc = LibsslError("the handshake", conn.errors())
                if reason is not None and self._config.ca_file is not None:
                    exc = LibsslError(
                        "the handshake", (*exc.reasons, "certificate verify failed", reason)
                    )
                raise _translate(exc, server=self._server)
            await self._wait_datagram(conn)

    async def _wait_datagram(self, conn: SslConnection) -> bool:
        """Feed one datagram, or run the retransmission timer; True if a datagram came."""
        protocol = self._protocol
        if protocol is None:
            raise Unavailable(
                f"the DTLS client for {self._server} is closed", code="lwm2m.dtls.closed"
            )
        timer_s = conn.timeout_s()
        try:
            data = await asyncio.wait_for(protocol.queue.get(), timer_s if timer_s else 1.0)
        except TimeoutError:
            conn.handle_timeout()
            self._flush()
            return False
        if not data:
            raise Unavailable(
                f"nothing listens on UDP {self._server}",
                hint="is the LwM2M server running?",
                code="lwm2m.dtls.unreachable",
            )
        conn.feed(data)
        return True

    def _require(self) -> SslConnection:
        if self._conn is None or self._transport is None:
            raise Unavailable(
                f"the DTLS client for {self._server} is not connected", code="lwm2m.dtls.closed"
            )
        return self._conn

    def _flush(self) -> None:
        conn = self._require()
        transport = self._transport
        for datagram in conn.outgoing():
            if transport is not None:
                transport.sendto(datagram)

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one application record.

        Raises:
            Unavailable: Not connected, or libssl refused the write.
        """
        conn = self._require()
        try:
            conn.write(data)
        except LibsslError as exc:
            raise _translate(exc, server=self._server) from exc
        self._flush()

    async def recv(self, *, timeout_s: float) -> bytes:
        """The next application record.

        Raises:
            TimeoutError: Nothing arrived within ``timeout_s``.
            Unavailable: The server closed the session (close_notify) or the record failed.
        """
        conn = self._require()
        async with asyncio.timeout(timeout_s):
            while True:
                data, error = conn.read(self._config.max_record_bytes)
                self._flush()
                if data is not None:
                    return data
                if error == SSL_ERROR_ZERO_RETURN:
                    raise Unavailable(
                        f"the DTLS server {self._server} closed the session",
                        code="lwm2m.dtls.closed",
                    )
                if error != SSL_ERROR_WANT_READ:
                    raise _translate(LibsslError("reading", conn.errors()), server=self._server)
                await self._wait_datagram(conn)

    async def close(self) -> None:
        """Send close_notify (if connected) and release the socket and libssl objects."""
        if self._conn is not None and self._transport is not None:
            with contextlib.suppress(Unavailable):
                self._conn.shutdown()
                self._flush()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._conn is not None:
            self._conn.free()
            self._conn = None

    async def __aenter__(self) -> DtlsClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def handshake_once(config: DtlsClientConfig) -> None:
    """Connect, complete one handshake and close (for benchmarks/lwm2m.py).

    Raises:
        VerificationFailed: The server refused the handshake.
        Unavailable: No handshake within the timeout.
    """
    client = DtlsClient(config)
    await client.connect()
    await client.close()
