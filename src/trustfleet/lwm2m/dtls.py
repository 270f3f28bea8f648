"""The DTLS 1.2 server of the LwM2M endpoint (RFC 6347): one UDP socket, a session per peer.

OpenSSL (pyOpenSSL) runs over memory BIOs; asyncio owns the socket. A datagram from an unknown
address goes through ``DTLSv1_listen`` with stateless cookies (HMAC of the address, rotating
secret): until a ClientHello carries a valid cookie, the server keeps nothing and answers with a
HelloVerifyRequest smaller than the ClientHello. Only then does a handshake take a slot
(``max_handshakes``); an established session takes a peer slot (``max_peers``, the oldest idle
evicted). Records OpenSSL rejects (garbage, truncated, replayed: its replay window) are dropped
by OpenSSL without touching the session. docs/lwm2m.md, "DTLS".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trustfleet.errors import Config
from trustfleet.lwm2m._dtls_peer import Peer, PeerTable
from trustfleet.lwm2m._dtls_records import CookieJar
from trustfleet.lwm2m._dtls_ssl import SslFactory
from trustfleet.lwm2m.ports import PeerIdentity
from trustfleet.settings.server import ServerSettings

__all__ = ["DtlsServer", "DtlsServerConfig", "DtlsStats"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]
RefusalHook = Callable[[Address, str, str | None, str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class DtlsServerConfig:
    """Everything the DTLS server needs; bounds are the ``[lwm2m]`` settings of the same names.

    Attributes:
        host: UDP address to bind.
        port: UDP port (0: any free one).
        modes: ``psk`` and/or ``cert``.
        ciphers: OpenSSL suite names, in preference order.
        cert_chain: The server's chain (certificate mode).
        key_file: Its key.
        ca_file: Trusted device CAs (and the root).
        ca_path: A hashed directory of further trusted CAs (CA rollover).
        crl_file: The device CAs' CRLs, PEM (checked at each handshake).
    """

    host: str
    port: int
    modes: tuple[str, ...]
    ciphers: tuple[str, ...]
    cert_chain: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    ca_path: Path | None = None
    crl_file: Path | None = None
    max_peers: int = 10_000
    max_handshakes: int = 256
    handshake_timeout_s: float = 30.0
    idle_timeout_s: float = 600.0
    max_datagram_bytes: int = 1500
    max_peer_buffer_bytes: int = 16 * 1024
    cookie_secret_ttl_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> DtlsServerConfig:
        """The configuration of a server home: ``[lwm2m]`` and the broker's device trust files
        (``broker/device-trust.pem``, ``broker/trust.d``, ``broker/device-ca.crl.pem``, kept
        current by the service for Mosquitto; see broker/_trust.py)."""
        section = settings.lwm2m
        broker_dir = settings.home / "broker"
        return cls(
            host=section.host,
            port=section.port,
            modes=tuple(section.modes),
            ciphers=tuple(section.ciphers),
            cert_chain=settings.path(section.tls_cert),
            key_file=settings.path(section.tls_key),
            ca_file=broker_dir / "device-trust.pem",
            ca_path=broker_dir / "trust.d",
            crl_file=broker_dir / "device-ca.crl.pem",
            max_peers=section.max_peers,
            max_handshakes=section.max_handshakes,
            handshake_timeout_s=section.handshake_timeout_s,
            idle_timeout_s=section.idle_timeout_s,
            max_datagram_bytes=section.max_datagram_bytes,
            max_peer_buffer_bytes=section.max_peer_buffer_bytes,
            cookie_secret_ttl_s=section.cookie_secret_ttl_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DtlsStats:
    """Counters of a running server.

    Attributes:
        sessions: Established sessions now.
        handshakes: Handshakes in progress now.
        hello_verify_requests: HelloVerifyRequests sent (stateless).
        established: Handshakes completed since start.
        refused: Handshakes that failed since start.
        dropped: Datagrams or peers dropped, by reason (``oversize``, ``max_handshakes``,
            ``max_peers``, ``no_cookie``, ``record``, ``idle``, ``handshake_timeout``, ...).
    """

    sessions: int
    handshakes: int
    hello_verify_requests: int
    established: int
    refused: int
    dropped: dict[str, int] = field(default_factory=dict)


_TICK_S = 0.1  # how often retransmission timers and expiries are looked at


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DtlsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._server._datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP error on the DTLS socket: %s", exc)


class DtlsServer:
    """A DTLS 1.2 server on one UDP socket, handing decrypted records to ``on_record``.

    Everything runs on the event loop's thread: ``psk_lookup``, ``on_record`` and
    ``on_refusal`` are called there (they must be quick and must not raise), and ``send``,
    ``close_peers`` and ``reload_trust`` must be called there (from another thread, through
    ``loop.call_soon_threadsafe``).
    """

    def __init__(
        self,
        config: DtlsServerConfig,
        *,
        psk_lookup: Callable[[str], bytes | None],
        on_record: Callable[[PeerIdentity, bytes], None],
        on_refusal: RefusalHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clock = clock
        self._cookies = CookieJar(ttl_s=config.cookie_secret_ttl_s, clock=clock)
        self._factory = SslFactory(
            modes=config.modes,
            ciphers=config.ciphers,
            cert_chain=config.cert_chain,
            key_file=config.key_file,
            ca_file=config.ca_file,
            ca_path=config.ca_path,
            crl_file=config.crl_file,
            cookies=self._cookies,
            psk_lookup=psk_lookup,
            mtu_bytes=min(config.max_datagram_bytes, 1400),
        )
        self._context = self._factory.build()
        self._trust_stamp = self._stamp_trust()
        self._peers = PeerTable(
            factory=self._factory,
            max_peers=config.max_peers,
            max_handshakes=config.max_handshakes,
            max_datagram_bytes=config.max_datagram_bytes,
            max_peer_buffer_bytes=config.max_peer_buffer_bytes,
            on_record=on_record,
            on_refusal=on_refusal,
            clock=clock,
        )
        self._transport: asyncio.DatagramTransport | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> tuple[str, int]:
        """Bind the UDP socket and start the timers; returns the bound address."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._config.host, self._config.port)
        )
        self._transport = transport
        self._peers.attach(transport)
        self._ticker = asyncio.create_task(self._tick_forever())
        sockname = transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    def _datagram(self, data: bytes, address: Address) -> None:
        if len(data) > self._config.max_datagram_bytes:
            self._peers.count_drop("oversize")
            return
        self._peers.datagram(self._context, data, address)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            self.tick()

    def tick(self) -> None:
        """Retransmit due handshake flights and expire handshakes and idle sessions."""
        self._peers.tick(
            handshake_timeout_s=self._config.handshake_timeout_s,
            idle_timeout_s=self._config.idle_timeout_s,
        )

    def send(self, address: Address, data: bytes) -> bool:
        """Send ``data`` as one application record; False if there is no session with it."""
        return self._peers.send(address, data)

    def peer(self, address: Address) -> PeerIdentity | None:
        """The identity of the established session with ``address``, if any."""
        found: Peer | None = self._peers.get(address)
        return found.identity if found is not None else None

    def close_peers(self, predicate: Callable[[PeerIdentity], bool]) -> int:
        """Send close_notify to and forget every session whose identity matches; the count."""
        return self._peers.close_matching(predicate)

    def reload_trust(self) -> None:
        """Re-read the CA and CRL files; new handshakes use them, sessions are kept.

        Raises:
            Config: The files cannot be read; the previous trust stays in force.
        """
        self._context = self._factory.build()

    def reload_trust_if_changed(self) -> bool:
        """Re-read the trust when the CRL or CA file changed (a revocation published by
        ``server run``'s parent); True if it did. A file caught half-written stays in force
        until the next call.
        """
        stamp = self._stamp_trust()
        if stamp == self._trust_stamp:
            return False
        try:
            self.reload_trust()
        except Config as exc:
            logger.warning("lwm2m: device trust not reloaded: %s", exc.one_line())
            return False
        self._trust_stamp = stamp
        return True

    def _stamp_trust(self) -> tuple[int, ...]:
        """The trust files' modification times (-1: absent)."""
        stamps = []
        for path in (self._config.crl_file, self._config.ca_file):
            try:
                stamps.append(path.stat().st_mtime_ns if path is not None else -1)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)

    def stats(self) -> DtlsStats:
        """The counters now."""
        counts = self._peers.counts
        return DtlsStats(
            sessions=self._peers.sessions,
            handshakes=self._peers.handshakes,
            hello_verify_requests=counts.get("hello_verify_request", 0),
            established=counts.get("established", 0),
            refused=counts.get("refused", 0),
            dropped=dict(self._peers.drops),
        )

    async def close(self) -> None:
        """Close every session (close_notify), stop the timers and the socket."""
        self._peers.close_matching(lambda _identity: True)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._transport is not None:
            self._transport.close()
