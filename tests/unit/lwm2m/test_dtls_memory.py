"""The DTLS peer table driven in memory (no socket): a PSK client, garbage and spoofed hellos."""

from __future__ import annotations

from typing import Any, cast

from cryptography.hazmat.bindings.openssl.binding import Binding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from trustfleet.lwm2m._dtls_peer import PeerTable
from trustfleet.lwm2m._dtls_records import CookieJar
from trustfleet.lwm2m._dtls_ssl import SslFactory
from trustfleet.lwm2m.ports import PeerIdentity

_BINDING = Binding()
FFI: Any = _BINDING.ffi
LIB: Any = _BINDING.lib
KEY = bytes(range(16))
CLIENT = ("192.0.2.7", 40000)


class Wire:
    """A fake datagram transport: what the server sent, by address."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))

    def take(self, address: tuple[str, int]) -> list[bytes]:
        mine = [data for data, to in self.sent if to == address]
        self.sent = [(data, to) for data, to in self.sent if to != address]
        return mine


def _psk_client() -> tuple[SSL.Connection, Any]:
    def callback(_ssl: Any, _hint: Any, identity: Any, _max_id: int, psk: Any, _max: int) -> int:
        FFI.memmove(identity, b"dev-0001\0", 9)
        FFI.memmove(psk, KEY, len(KEY))
        return len(KEY)

    handle = FFI.callback(
        "unsigned int (*)(SSL *, const char *, char *, unsigned int, unsigned char *, "
        "unsigned int)",
        callback,
    )
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_cipher_list(b"PSK-AES128-CCM8:@SECLEVEL=0")
    LIB.SSL_CTX_set_psk_client_callback(ctx._context, handle)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn, handle  # the callback handle must outlive the connection


class Rig:
    def __init__(self, **bounds: Any) -> None:
        self.records: list[tuple[PeerIdentity, bytes]] = []
        self.now = 0.0
        self.factory = SslFactory(
            modes=("psk",),
            ciphers=("PSK-AES128-CCM8",),
            cert_chain=None,
            key_file=None,
            ca_file=None,
            ca_path=None,
            crl_file=None,
            cookies=CookieJar(ttl_s=300, clock=lambda: self.now),
            psk_lookup=lambda identity: KEY if identity == "dev-0001" else None,
            mtu_bytes=1400,
        )
        self.context = self.factory.build()
        self.wire = Wire()
        self.table = PeerTable(
            factory=self.factory,
            max_peers=bounds.get("max_peers", 10),
            max_handshakes=bounds.get("max_handshakes", 10),
            max_datagram_bytes=1500,
            max_peer_buffer_bytes=16 * 1024,
            on_record=lambda peer, data: self.records.append((peer, data)),
            on_refusal=None,
            clock=lambda: self.now,
        )
        self.table.attach(cast(Any, self.wire))

    def deliver(self, data: bytes, address: tuple[str, int] = CLIENT) -> None:
        self.table.datagram(self.context, data, address)

    def connect(self, address: tuple[str, int] = CLIENT) -> tuple[SSL.Connection, Any]:
        conn, handle = _psk_client()
        for _ in range(10):
            try:
                conn.do_handshake()
                return conn, handle
            except SSL.WantReadError:
                pass
            self.deliver(conn.bio_read(65536), address)
            for datagram in self.wire.take(address):
                conn.bio_write(datagram)
        raise AssertionError("no handshake")

    def send(self, conn: SSL.Connection, data: bytes, address: tuple[str, int] = CLIENT) -> None:
        conn.send(data)
        self.deliver(conn.bio_read(65536), address)


def test_psk_handshake_in_memory() -> None:
    rig = Rig()
    conn, _handle = rig.connect()
    rig.send(conn, b"hello")
    assert [(p.mode, p.identity, d) for p, d in rig.records] == [("psk", "dev-0001", b"hello")]
    assert rig.table.sessions == 1 and rig.table.counts["hello_verify_request"] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_garbage_leaves_the_session_and_the_server_unaffected(junk: list[bytes]) -> None:
    rig = Rig()
    conn, _handle = rig.connect()
    for data in junk:
        rig.deliver(data)  # from the session's address
        rig.deliver(data, ("198.51.100.1", 1))  # from an unknown one
    rig.send(conn, b"still here")
    assert [d for _, d in rig.records] == [b"still here"]
    assert (rig.table.sessions, rig.table.handshakes) == (1, 0)


def test_spoofed_hellos_get_verify_requests_only() -> None:
    rig = Rig(max_handshakes=1)
    conn, _handle = _psk_client()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        hello = conn.bio_read(65536)
    for port in range(1000, 1100):
        rig.deliver(hello, ("203.0.113.9", port))
    assert (rig.table.sessions, rig.table.handshakes) == (0, 0)
    assert rig.table.counts["hello_verify_request"] == 100
    assert all(len(data) < len(hello) for data, _ in rig.wire.sent)


def test_idle_session_expires_with_the_injected_clock() -> None:
    rig = Rig()
    rig.connect()
    rig.now += 599
    rig.table.tick(handshake_timeout_s=30, idle_timeout_s=600)
    assert rig.table.sessions == 1
    rig.now += 2
    rig.table.tick(handshake_timeout_s=30, idle_timeout_s=600)
    assert rig.table.sessions == 0 and rig.table.drops["idle"] == 1


def test_regression_empty_datagram_is_dropped_not_raised() -> None:
    # bio_write(b"") raises WantReadError in pyOpenSSL; it escaped datagram_received once.
    rig = Rig()
    conn, _handle = rig.connect()
    rig.deliver(b"")
    rig.deliver(b"", ("198.51.100.1", 1))
    rig.send(conn, b"ok")
    assert [d for _, d in rig.records] == [b"ok"] and rig.table.drops["empty"] == 2
