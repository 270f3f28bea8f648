"""The DTLS 1.2 server against real peers: `openssl s_client -dtls1_2` and a pyOpenSSL client."""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dtls_peers import PSK_HEX, PyDtlsClient, ThrowawayPki, make_pki, s_client, stop
from OpenSSL import SSL

from support import aio
from trustfleet.errors import Config
from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.lwm2m.ports import PeerIdentity

ASCII_PSK = b"an-ascii-psk-for-libcoap"  # coap-client's -k takes text
PSK_CIPHER = "PSK-AES128-CCM8:@SECLEVEL=0"
ECDSA_CIPHER = "ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0"


def _lookup(identity: str) -> bytes | None:
    if identity == "boom":
        raise RuntimeError("the store is down")
    return {"dev-0001": bytes.fromhex(PSK_HEX), "dev-ascii": ASCII_PSK}.get(identity)


class Harness:
    def __init__(self, pki: ThrowawayPki, **bounds: Any) -> None:
        cert, key, _ = pki.issue("lwm2m-server")
        self.records: list[tuple[PeerIdentity, bytes]] = []
        self.refusals: list[tuple[str, str | None]] = []
        config = DtlsServerConfig(
            host="127.0.0.1",
            port=0,
            modes=bounds.pop("modes", ("psk", "cert")),
            ciphers=("ECDHE-ECDSA-AES128-CCM8", "PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256"),
            cert_chain=cert,
            key_file=key,
            ca_file=pki.ca_file,
            crl_file=pki.crl_file,
            **bounds,
        )
        self.now = 1000.0
        self.server_reply: Callable[[bytes], bytes] = lambda data: b"echo:" + data
        self.server = DtlsServer(
            config,
            psk_lookup=_lookup,
            on_record=self._record,
            on_refusal=lambda _addr, code, identity, _detail: self.refusals.append(
                (code, identity)
            ),
            clock=lambda: self.now,
        )
        self.port = 0

    def _record(self, peer: PeerIdentity, data: bytes) -> None:
        self.records.append((peer, data))
        self.server.send(peer.address, self.server_reply(data))


def run(pki: ThrowawayPki, body: Callable[[Harness], Awaitable[None]], **bounds: Any) -> Harness:
    harness = Harness(pki, **bounds)

    async def main() -> None:
        _, harness.port = await harness.server.start()
        try:
            await body(harness)
        finally:
            await harness.server.close()

    aio.run(main())
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


@pytest.mark.parametrize(
    "cipher", [ECDSA_CIPHER, "ECDHE-ECDSA-AES128-GCM-SHA256"], ids=["ccm8", "gcm"]
)
def test_cert_ecdsa_echo(pki: ThrowawayPki, cipher: str) -> None:
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


async def until(condition: Callable[[], bool], *, attempts: int = 150) -> None:
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


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
                sizes.append(len(await _in_thread(functools.partial(sock.recv, 65536))))
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
            await until(lambda: h.server.stats().dropped.get("max_handshakes") == 1)
            assert h.server.stats().handshakes == 1
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
            await until(lambda: h.server.stats().dropped.get("evicted") == 1)
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


@pytest.mark.parametrize(
    "args",
    [
        ("-psk_identity", "dev-0001", "-psk", PSK_HEX, "-cipher", "PSK-AES128-GCM-SHA256"),
        ("-psk_identity", "dev-0001", "-psk", PSK_HEX, "-cipher", PSK_CIPHER),
    ],
    ids=["psk_gcm", "psk_ccm8"],
)
def test_psk_suites_negotiate_and_the_key_is_never_logged(
    pki: ThrowawayPki, args: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def body(h: Harness) -> None:
        client = await s_client(h.port, *args)
        try:
            assert await echo_once(client) == b"echo:hello\n"
        finally:
            await stop(client)

    run(pki, body)
    assert PSK_HEX not in caplog.text and "dev-0001" in caplog.text


@pytest.mark.parametrize(
    ("case", "code"),
    [
        # DTLS drops records that fail to decrypt (RFC 6347 4.1.2.7): the server never sees the
        # wrong key as such, the handshake stalls and times out, naming the identity.
        ("wrong_psk", "lwm2m.dtls.handshake_timeout"),
        ("lookup_raises", "lwm2m.dtls.psk_unknown"),
        ("untrusted_ca", "lwm2m.dtls.cert_invalid"),
        ("no_client_cert", "lwm2m.dtls.handshake_failed"),
    ],
    ids=["wrong_psk", "lookup_raises", "untrusted_ca", "no_client_cert"],
)
def test_refused_handshakes(pki: ThrowawayPki, tmp_path: Path, case: str, code: str) -> None:
    other = make_pki(tmp_path / "other") if case == "untrusted_ca" else pki
    cert, key, _ = other.issue("dev-0042")
    args = {
        "wrong_psk": ("-psk_identity", "dev-0001", "-psk", "ff" * 16, "-cipher", PSK_CIPHER),
        "lookup_raises": ("-psk_identity", "boom", "-psk", PSK_HEX, "-cipher", PSK_CIPHER),
        "untrusted_ca": ("-cert", str(cert), "-key", str(key), "-cipher", ECDSA_CIPHER),
        "no_client_cert": ("-cipher", ECDSA_CIPHER),
    }[case]

    async def body(h: Harness) -> None:
        client = await s_client(h.port, *args)
        try:
            if case == "wrong_psk":
                await until(lambda: h.server.stats().handshakes == 1)
                await asyncio.sleep(0.5)  # let it reach the key exchange (not asserted on)
                h.now += 60
                h.server.tick()
            else:
                await asyncio.wait_for(client.wait(), 15)
        finally:
            await stop(client)
        good = await s_client(
            h.port, "-psk_identity", "dev-0001", "-psk", PSK_HEX, "-cipher", PSK_CIPHER
        )
        try:  # the server is unaffected
            assert await echo_once(good) == b"echo:hello\n"
        finally:
            await stop(good)

    h = run(pki, body)
    assert [c for c, _ in h.refusals] == [code]


def test_new_client_hello_from_a_known_address_replaces_the_session(pki: ThrowawayPki) -> None:
    cert, key, _ = pki.issue("dev-0050")

    async def body(h: Harness) -> None:
        first = PyDtlsClient(h.port, cert=cert, key=key, ciphers=ECDSA_CIPHER)
        local_port = first.sock.getsockname()[1]
        await _in_thread(first.handshake)
        first.close()  # the device reboots: same address, no DTLS state
        second = PyDtlsClient(
            h.port, cert=cert, key=key, ciphers=ECDSA_CIPHER, local_port=local_port
        )
        try:
            await _in_thread(second.handshake)
            second.send(b"again")
            assert await _in_thread(second.recv) == b"echo:again"
        finally:
            second.close()

    h = run(pki, body)
    assert h.server.stats().dropped.get("replaced") == 1


def test_garbage_from_unknown_addresses_creates_nothing(pki: ThrowawayPki) -> None:
    async def body(h: Harness) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"", b"\x16", b"\x16\xfe\xfd" + b"\xff" * 40, bytes(range(256))):
                sock.sendto(junk, ("127.0.0.1", h.port))
            await asyncio.sleep(0.3)
        stats = h.server.stats()
        assert (stats.sessions, stats.handshakes, stats.hello_verify_requests) == (0, 0, 0)

    run(pki, body)


def _coap_content(request: bytes) -> bytes:
    """A piggybacked 2.05 Content "hi" answering a CoAP request (enough for coap-client)."""
    token_length = request[0] & 0x0F
    return bytes([0x60 | token_length, 0x45]) + request[2 : 4 + token_length] + b"\xffhi"


@pytest.mark.parametrize("mode", ["psk", "cert"])
def test_libcoap_client_interop(pki: ThrowawayPki, mode: str) -> None:
    if shutil.which("coap-client-openssl") is None:
        pytest.skip("coap-client-openssl (libcoap3-bin) is not installed")
    cert, key, _ = pki.issue("dev-0060")
    creds = {
        "psk": ("-u", "dev-ascii", "-k", ASCII_PSK.decode()),
        "cert": ("-c", str(cert), "-j", str(key), "-C", str(pki.ca_file)),
    }[mode]
    output: list[bytes] = []

    async def body(h: Harness) -> None:
        h.server_reply = _coap_content
        process = await asyncio.create_subprocess_exec(
            "coap-client-openssl", "-m", "get", *creds, f"coaps://127.0.0.1:{h.port}/3/0/0",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            output.append(out)
        finally:
            await stop(process)

    h = run(pki, body)
    assert output == [b"hi\n"]
    assert [p.mode for p, _ in h.records] == [mode]


@pytest.mark.parametrize(
    ("modes", "cipher"),
    [(("psk",), ECDSA_CIPHER), (("cert",), PSK_CIPHER)],
    ids=["cert_when_psk_only", "psk_when_cert_only"],
)
def test_a_mode_that_is_off_is_refused(
    pki: ThrowawayPki, modes: tuple[str, ...], cipher: str
) -> None:
    cert, key, _ = pki.issue("dev-0070")
    args = ("-cert", str(cert), "-key", str(key), "-psk_identity", "dev-0001", "-psk", PSK_HEX)

    async def body(h: Harness) -> None:
        client = await s_client(h.port, *args, "-cipher", cipher)
        try:
            await asyncio.wait_for(client.wait(), 15)
        finally:
            await stop(client)

    h = run(pki, body, modes=modes)
    assert h.records == [] and [c for c, _ in h.refusals] == ["lwm2m.dtls.handshake_failed"]


def test_send_refuses_what_does_not_fit(pki: ThrowawayPki) -> None:
    cert, key, _ = pki.issue("dev-0080")
    results: list[bool] = []

    async def body(h: Harness) -> None:
        client = PyDtlsClient(h.port, cert=cert, key=key, ciphers=ECDSA_CIPHER)
        try:
            await _in_thread(client.handshake)
            client.send(b"x")
            assert await _in_thread(client.recv) == b"echo:x"
            address = h.records[0][0].address
            results.append(h.server.send(address, b"y" * 1200))
            results.append(h.server.send(address, b"y" * 4000))  # above the record MTU
            results.append(h.server.send(address, b"z" * 20_000))  # above max_peer_buffer_bytes
            results.append(h.server.send(("127.0.0.1", 9), b"nobody"))
            assert await _in_thread(client.recv) == b"y" * 1200
        finally:
            client.close()

    run(pki, body)
    assert results == [True, False, False, False]


def test_certificate_mode_without_its_crl_file_fails_closed(pki: ThrowawayPki) -> None:
    pki.crl_file.unlink()
    with pytest.raises(Config) as caught:
        Harness(pki)
    assert caught.value.code == "lwm2m.dtls.config"
