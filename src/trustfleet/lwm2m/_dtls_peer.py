"""DTLS sessions by peer address: the stateless cookie phase, handshakes, records, expiry."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from OpenSSL import SSL

from trustfleet.lwm2m._dtls_records import pack_records
from trustfleet.lwm2m._dtls_ssl import SslFactory, Step, note_of, peer_common_name, run_step
from trustfleet.lwm2m.ports import PeerIdentity

__all__ = ["Peer", "PeerTable"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]
_READ_BYTES = 65_536


@dataclass(slots=True)
class Peer:
    """One peer's connection; ``identity`` is set once its handshake is done."""

    address: Address
    connection: SSL.Connection
    started: float
    last_seen: float
    identity: PeerIdentity | None = None


class PeerTable:
    """Sessions by address, with the bounds of :class:`~trustfleet.lwm2m.dtls.DtlsServerConfig`."""

    def __init__(
        self,
        *,
        factory: SslFactory,
        max_peers: int,
        max_handshakes: int,
        max_datagram_bytes: int,
        max_peer_buffer_bytes: int,
        on_record: Callable[[PeerIdentity, bytes], None],
        on_refusal: Callable[[Address, str, str | None, str], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self._factory = factory
        self._max_peers = max_peers
        self._max_handshakes = max_handshakes
        self._max_datagram_bytes = max_datagram_bytes
        self._max_peer_buffer_bytes = max_peer_buffer_bytes
        self._on_record = on_record
        self._on_refusal = on_refusal
        self._clock = clock
        self._peers: dict[Address, Peer] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()

    def attach(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport

    @property
    def sessions(self) -> int:
        return sum(1 for peer in self._peers.values() if peer.identity is not None)

    @property
    def handshakes(self) -> int:
        return sum(1 for peer in self._peers.values() if peer.identity is None)

    def get(self, address: Address) -> Peer | None:
        peer = self._peers.get(address)
        return peer if peer is not None and peer.identity is not None else None

    def count_drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def _flush(self, connection: SSL.Connection, address: Address) -> None:
        out = b""
        while True:
            chunk = run_step(lambda: connection.bio_read(_READ_BYTES))
            if chunk.step is not Step.DONE or not chunk.value:
                break
            out += chunk.value
        if out and self._transport is not None:
            for datagram in pack_records(out, max_datagram_bytes=self._max_datagram_bytes):
                self._transport.sendto(datagram, address)

    # -- incoming -------------------------------------------------------------------------

    def datagram(self, context: SSL.Context, data: bytes, address: Address) -> None:
        peer = self._peers.get(address)
        if peer is None:
            self._listen(context, data, address)
            return
        peer.connection.bio_write(data)
        if peer.identity is None:
            self._handshake(peer)
        else:
            peer.last_seen = self._clock()
            self._read_records(peer, peer.identity)

    def _listen(self, context: SSL.Context, data: bytes, address: Address) -> None:
        """The stateless phase: no state is kept until a ClientHello has a valid cookie."""
        connection = self._factory.connection(context, address)
        connection.bio_write(data)
        result = run_step(connection.DTLSv1_listen)
        if result.step is not Step.DONE:
            out = run_step(lambda: connection.bio_read(_READ_BYTES))
            if out.step is Step.DONE and out.value and self._transport is not None:
                self.counts["hello_verify_request"] += 1
                self._transport.sendto(out.value, address)
            else:
                self.drops["no_cookie"] += 1
            return
        if self.handshakes >= self._max_handshakes:
            self.drops["max_handshakes"] += 1
            return
        if len(self._peers) >= self._max_peers and not self._evict_idle():
            self.drops["max_peers"] += 1
            return
        now = self._clock()
        peer = Peer(address=address, connection=connection, started=now, last_seen=now)
        self._peers[address] = peer
        self._handshake(peer)

    def _evict_idle(self) -> bool:
        established = [peer for peer in self._peers.values() if peer.identity is not None]
        if not established:
            return False
        oldest = min(established, key=lambda peer: peer.last_seen)
        self._close(oldest)
        self.drops["evicted"] += 1
        return True

    def _handshake(self, peer: Peer) -> None:
        connection = peer.connection
        result = run_step(connection.do_handshake)
        self._flush(connection, peer.address)
        if result.step is Step.WANT_READ:
            return
        if result.step is not Step.DONE:
            self._refuse(peer, result.detail)
            return
        note = note_of(connection)
        cipher = connection.get_cipher_name() or ""
        if "PSK" in cipher and note.psk_identity is not None:
            peer.identity = PeerIdentity(
                mode="psk", identity=note.psk_identity, address=peer.address
            )
        else:
            name = peer_common_name(connection)
            if name is None:
                self._refuse(peer, "no subject CN in the peer certificate")
                return
            peer.identity = PeerIdentity(mode="cert", identity=name, address=peer.address)
        peer.last_seen = self._clock()
        self.counts["established"] += 1
        logger.info("DTLS session with %s as %s (%s)", peer.address, peer.identity.identity, cipher)
        self._read_records(peer, peer.identity)

    def _refuse(self, peer: Peer, detail: str) -> None:
        note = note_of(peer.connection)
        if note.psk_identity is not None:
            code = "lwm2m.dtls.psk_mismatch" if note.psk_found else "lwm2m.dtls.psk_unknown"
        elif note.revoked:
            code = "lwm2m.dtls.cert_revoked"
        elif note.verify_errors:
            code = "lwm2m.dtls.cert_invalid"
        else:
            code = "lwm2m.dtls.handshake_failed"
        self._report(peer, code, note.psk_identity, detail)

    def _report(self, peer: Peer, code: str, identity: str | None, detail: str) -> None:
        self._peers.pop(peer.address, None)
        self.counts["refused"] += 1
        logger.info("DTLS handshake with %s refused: %s (%s)", peer.address, code, detail)
        if self._on_refusal is not None:
            self._on_refusal(peer.address, code, identity, detail)

    def _read_records(self, peer: Peer, identity: PeerIdentity) -> None:
        received = 0
        while True:
            result = run_step(lambda: peer.connection.recv(_READ_BYTES))
            if result.step is Step.WANT_READ:
                break
            if result.step is Step.CLOSED:
                self._close(peer)
                return
            if result.step is Step.FAILED:
                self.drops["record"] += 1
                break
            received += len(result.value)
            if received > self._max_peer_buffer_bytes:
                self.drops["peer_buffer"] += 1
                self._close(peer)
                return
            self._on_record(identity, result.value)
        self._flush(peer.connection, peer.address)

    # -- outgoing, timers -----------------------------------------------------------------

    def send(self, address: Address, data: bytes) -> bool:
        peer = self.get(address)
        if peer is None or len(data) > self._max_peer_buffer_bytes:
            return False
        result = run_step(lambda: peer.connection.send(data))
        self._flush(peer.connection, address)
        return result.step is Step.DONE

    def _close(self, peer: Peer) -> None:
        run_step(peer.connection.shutdown)
        self._flush(peer.connection, peer.address)
        self._peers.pop(peer.address, None)

    def close_matching(self, predicate: Callable[[PeerIdentity], bool]) -> int:
        matching = [
            peer
            for peer in self._peers.values()
            if peer.identity is not None and predicate(peer.identity)
        ]
        for peer in matching:
            self._close(peer)
        return len(matching)

    def tick(self, *, handshake_timeout_s: float, idle_timeout_s: float) -> None:
        now = self._clock()
        for peer in list(self._peers.values()):
            if peer.identity is None:
                if now - peer.started >= handshake_timeout_s:
                    self.drops["handshake_timeout"] += 1
                    identity = note_of(peer.connection).psk_identity
                    self._report(peer, "lwm2m.dtls.handshake_timeout", identity, "timed out")
                    continue
                timeout = run_step(peer.connection.DTLSv1_get_timeout)
                if timeout.step is Step.DONE and timeout.value is not None and timeout.value <= 0:
                    run_step(peer.connection.DTLSv1_handle_timeout)
                    self._flush(peer.connection, peer.address)
            elif now - peer.last_seen >= idle_timeout_s:
                self.drops["idle"] += 1
                self._close(peer)
