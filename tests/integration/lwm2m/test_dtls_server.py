"""The DTLS 1.2 server against real peers: `openssl s_client -dtls1_2` and a pyOpenSSL client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dtls_peers import PSK_HEX, PyDtlsClient, ThrowawayPki, make_pki, s_client, stop
from OpenSSL import SSL

from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.lwm2m.ports import PeerIdentity

PSK_CIPHER = "PSK-AES128-CCM8:@SECLEVEL=0"
ECDSA_CIPHER = "ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0"


class Harness:
    def __init__(self, pki: ThrowawayPki, **bounds: Any) -> None:
        cert, key, _ = pki.issue("lwm2m-server")
        self.records: list[tuple[PeerIdentity, bytes]] = []
        self.refusals: list[tuple[str, str | None]] = []
        config = DtlsServerConfig(
            host="127.0.0.1",
            port=0,
            modes=("psk", "cert"),
            ciphers=("ECDHE-ECDSA-AES128-CCM8", "PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256"),
            cert_chain=cert,
            key_file=key,
            ca_file=pki.ca_file,
            crl_file=pki.crl_file,
            **bounds,
        )
        self.now = 1000.0
        self.server = DtlsServer(
            config,
            psk_lookup=lambda identity: bytes.fromhex(PSK_HEX) if identity == "dev-0001" else None,
            on_record=self._record,
            on_refusal=lambda _addr, code, identity, _detail: self.refusals.append(
                (code, identity)
            ),
            clock=lambda: self.now,
        )
        self.port = 0

    def _record(self, peer: PeerIdentity, data: bytes) -> None:
        self.records.append((peer, data))
        self.server.send(peer.address, b"echo:" + data)


def run(pki: ThrowawayPki, body: Callable[[Harness], Awaitable[None]], **bounds: Any) -> Harness:
    harness = Harness(pki, **bounds)

    async def main() -> None:
        _, harness.port = await harness.server.start()
        try:
            await body(harness)
        finally:
            await harness.server.close()

    asyncio.run(main())
    return harness


async def echo_once(process: asyncio.subprocess.Process) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"hello\n")
    await process.stdin.drain()
    return await asyncio.wait_for(process.stdout.readexactly(11), 15)


@pytest.fixture
def pki(tmp_path: Path) -> ThrowawayPki:
    return make_pki(tmp_path)


def test_psk_ccm8_echo(pki: ThrowawayPki) -> None:
    async def body(h: Harness) -> None:
        client = await s_client(
            h.port, "-psk_identity", "dev-0001", "-psk", PSK_HEX, "-cipher", PSK_CIPHER
        )
        try:
            assert await echo_once(client) == b"echo:hello\n"
        finally:
            await stop(client)

    h = run(pki, body)
    assert [(p.mode, p.identity, d) for p, d in h.records] == [("psk", "dev-0001", b"hello\n")]


def test_unknown_psk_identity_refused(pki: ThrowawayPki) -> None:
    async def body(h: Harness) -> None:
        client = await s_client(
            h.port, "-psk_identity", "dev-9999", "-psk", PSK_HEX, "-cipher", PSK_CIPHER
        )
        await asyncio.wait_for(client.wait(), 15)

    h = run(pki, body)
    assert h.refusals == [("lwm2m.dtls.psk_unknown", "dev-9999")]
    assert h.records == []


def test_cert_ecdsa_ccm8_echo(pki: ThrowawayPki) -> None:
    cert, key, _ = pki.issue("dev-0001")

    async def body(h: Harness) -> None:
        client = await s_client(
            h.port, "-cert", str(cert), "-key", str(key), "-CAfile", str(pki.ca_file),
            "-cipher", ECDSA_CIPHER,
        )  # fmt: skip
        try:
            assert await echo_once(client) == b"echo:hello\n"
        finally:
            await stop(client)

    h = run(pki, body)
    assert [(p.mode, p.identity) for p, _ in h.records] == [("cert", "dev-0001")]


def test_revoked_cert_refused_and_reload_trust(pki: ThrowawayPki) -> None:
    cert, key, issued = pki.issue("dev-0002")
    args = ("-cert", str(cert), "-key", str(key), "-cipher", ECDSA_CIPHER)

    async def body(h: Harness) -> None:
        client = await s_client(h.port, *args)
        try:
            assert await echo_once(client) == b"echo:hello\n"
        finally:
            await stop(client)
        pki.write_crl([issued])
        h.server.reload_trust()
        client = await s_client(h.port, *args)
        await asyncio.wait_for(client.wait(), 15)

    h = run(pki, body)
    assert h.refusals == [("lwm2m.dtls.cert_revoked", None)]
    assert len(h.records) == 1


def test_close_peers_sends_close_notify(pki: ThrowawayPki) -> None:
    async def body(h: Harness) -> None:
        client = await s_client(
            h.port, "-psk_identity", "dev-0001", "-psk", PSK_HEX, "-cipher", PSK_CIPHER
        )
        try:
            await echo_once(client)
            assert h.server.stats().sessions == 1
            assert h.server.close_peers(lambda peer: peer.identity == "dev-0001") == 1
            assert h.server.stats().sessions == 0
            await asyncio.wait_for(client.wait(), 15)  # s_client exits on close_notify
        finally:
            await stop(client)

    run(pki, body)


def _in_thread(func: Callable[[], Any]) -> Awaitable[Any]:
    return asyncio.get_running_loop().run_in_executor(None, func)


def test_garbage_truncated_replayed_and_oversized_records_dropped(pki: ThrowawayPki) -> None:
    cert, key, _ = pki.issue("dev-0003")

    async def body(h: Harness) -> None:
        client = PyDtlsClient(h.port, cert=cert, key=key, ciphers=ECDSA_CIPHER)
        try:
            await _in_thread(client.handshake)
            record = client.send(b"one")
            assert await _in_thread(client.recv) == b"echo:one"
            for bad in (b"\x17\xfe\xfd" + b"\x00" * 20, record[:-3], record, b"\x00" * 2000):
                client.sock.send(bad)  # garbage, truncated, replayed, oversized
            client.send(b"two")
            assert await _in_thread(client.recv) == b"echo:two"
        finally:
            client.close()

    h = run(pki, body)
    assert [d for _, d in h.records] == [b"one", b"two"]
    stats = h.server.stats()
    assert stats.sessions == 0 and stats.dropped.get("oversize") == 1


def _client_hello() -> bytes:
    conn = SSL.Connection(SSL.Context(SSL.DTLS_CLIENT_METHOD), None)
    conn.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(65536)


def test_spoofed_hello_flood_gets_only_hello_verify_requests(pki: ThrowawayPki) -> None:
    hello = _client_hello()
    sizes: list[int] = []

    async def body(h: Harness) -> None:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
        try:
            for sock in socks:
                sock.settimeout(5)
                sock.sendto(hello, ("127.0.0.1", h.port))
            for sock in socks:
                sizes.append(len(await _in_thread(lambda s=sock: s.recv(65536))))
            assert h.server.stats().handshakes == 0 and h.server.stats().sessions == 0
        finally:
            for sock in socks:
                sock.close()

    h = run(pki, body)
    assert h.server.stats().hello_verify_requests == 50
    assert max(sizes) < len(hello)


def test_max_handshakes_and_handshake_timeout(pki: ThrowawayPki) -> None:
    async def body(h: Harness) -> None:
        clients = [
            PyDtlsClient(h.port, cert=c, key=k, ciphers=ECDSA_CIPHER)
            for c, k, _ in (pki.issue("dev-0004"), pki.issue("dev-0005"))
        ]
        try:
            for client in clients:
                client.step()  # ClientHello
                await _in_thread(client.receive)  # HelloVerifyRequest
                client.step()  # ClientHello with the cookie: a handshake slot
            await asyncio.sleep(0.5)
            assert h.server.stats().handshakes == 1
            assert h.server.stats().dropped.get("max_handshakes") == 1
            h.now += 60
            h.server.tick()
            assert h.server.stats().handshakes == 0
        finally:
            for client in clients:
                client.close()

    h = run(pki, body, max_handshakes=1, handshake_timeout_s=30.0)
    assert ("lwm2m.dtls.handshake_timeout", None) in h.refusals


def test_idle_sessions_expire_and_max_peers_evicts_oldest(pki: ThrowawayPki) -> None:
    pairs = [pki.issue(f"dev-001{n}") for n in range(3)]

    async def body(h: Harness) -> None:
        clients = [PyDtlsClient(h.port, cert=c, key=k, ciphers=ECDSA_CIPHER) for c, k, _ in pairs]
        try:
            for client in clients:
                await _in_thread(client.handshake)
                h.now += 1
            await asyncio.sleep(0.3)
            assert h.server.stats().sessions == 2
            assert h.server.stats().dropped.get("evicted") == 1
            h.now += 700
            h.server.tick()
            assert h.server.stats().sessions == 0
            assert h.server.stats().dropped.get("idle") == 2
        finally:
            for client in clients:
                client.close()

    run(pki, body, max_peers=2, idle_timeout_s=600.0)
