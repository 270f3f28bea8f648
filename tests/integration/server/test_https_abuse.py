"""Issue 9 §3: the HTTPS front end under abuse, one attack per case, on the real protocol.

The server is the real stack (pyOpenSSL + h11 + uvloop) in a thread with small limits; the
attackers are plain sockets and Python's ``ssl``. Nothing here asserts on wall-clock time: the
slow clients dawdle for far longer than the limits under test, and the assertion is that the
server ended the connection before the client was done.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import pytest
from httpskit import Pki, Served, client_ctx, make_pki, serving

from trustfleet.server._limits import ConnectionLimits

pytestmark = pytest.mark.integration

BIG_RESPONSE_BYTES = 32 << 20
PUSH_LIMIT_BYTES = 64 << 20  # what the pipelining client tries to push without reading
CHUNK = 64 * 1024

LIMITS = ConnectionLimits(
    max_header_bytes=4096,
    max_body_bytes=16 * 1024,
    handshake_timeout_s=1.0,
    idle_timeout_s=1.0,
    request_timeout_s=1.0,
    max_connections=6,
    max_connections_per_source=4,
    write_buffer_bytes=64 * 1024,
)


async def _big_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A large streamed answer (like a firmware target), or a small one for ``/small``."""
    if scope["type"] != "http":
        return
    await receive()
    size = 5 if scope["path"] == "/small" else BIG_RESPONSE_BYTES
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if size == 5:
        await send({"type": "http.response.body", "body": b"small"})
        return
    block = b"\0" * CHUNK
    for sent in range(0, size, CHUNK):
        more = sent + CHUNK < size
        await send({"type": "http.response.body", "body": block, "more_body": more})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def served(pki: Pki) -> Iterator[Served]:
    """A fresh server per test: the connection caps count per server."""
    with serving(pki, app=_big_app, limits=LIMITS) as srv:
        yield srv


def _tls(
    pki: Pki, port: int, *, source: str = "127.0.0.1", timeout_s: float = 5.0
) -> ssl.SSLSocket:
    tcp = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0)
    )
    return client_ctx(pki, with_cert=False).wrap_socket(tcp, server_hostname="localhost")


def _closed_by_server(sock: socket.socket | ssl.SSLSocket, *, wait_s: float) -> tuple[bool, bytes]:
    """(True, what came) if the server closed within ``wait_s``; (False, b"") if still open."""
    sock.settimeout(wait_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return False, data
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True, data
    return True, data


@pytest.fixture
def patient(pki: Pki) -> Iterator[Served]:
    """Caps of 6 per worker and 4 per source, and timeouts long enough to hold connections."""
    limits = replace(LIMITS, idle_timeout_s=60.0, request_timeout_s=60.0)
    with serving(pki, app=_big_app, limits=limits) as srv:
        yield srv


# -- finding 1: pipelined requests while a large response is not read -----------------------


def test_pipelining_without_reading_is_held_back_by_flow_control(pki: Pki, patient: Served) -> None:
    """Found: one client grew a worker from 112 to 410 MiB in 0.5 s.

    The client asks for a large file, never reads, and keeps sending requests. The server
    must stop reading once a request is complete: the client's sends then stall after what
    the kernel's socket buffers hold, far short of what it tried to push.
    """
    request = b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n"
    pipelined = request * (CHUNK // len(request))
    pushed = 0
    with _tls(pki, patient.port, timeout_s=2.0) as tls:
        try:
            while pushed < PUSH_LIMIT_BYTES:
                tls.sendall(pipelined)
                pushed += len(pipelined)
        except TimeoutError:  # the server stopped reading: TCP flow control holds us back
            pass
    assert pushed < 16 << 20, f"the server took {pushed >> 20} MiB of unread requests"


def test_pipelined_small_requests_are_all_answered(pki: Pki, served: Served) -> None:
    request = b"GET /small HTTP/1.1\r\nhost: a\r\n\r\n"
    last = b"GET /small HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    with _tls(pki, served.port) as tls:
        tls.sendall(request * 20 + last)
        closed, data = _closed_by_server(tls, wait_s=5.0)
    assert closed
    assert data.count(b"HTTP/1.1 200 ") == 21


# -- finding 2: slow clients ----------------------------------------------------------------


@dataclass(frozen=True)
class Drip:
    head: bytes  # sent at once after the handshake
    drip: bytes  # then one byte per ``every_s``
    tls: bool = True


SLOW = {
    # Found: 1,000 connections each sending one byte of a declared 8,000-byte body every 20 s
    # all stayed open past 60 s: each byte restarted the idle timer.
    "slow-body-byte-by-byte": Drip(
        b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 8000\r\n\r\n", b"a" * 8000
    ),
    "slow-headers-byte-by-byte": Drip(b"", b"GET / HTTP/1.1\r\nhost: a\r\nx-pad: " + b"a" * 4000),
    "slow-chunked-body": Drip(
        b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n", b"1\r\na\r\n" * 2000
    ),
    "slow-tls-handshake": Drip(b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" * 100, tls=False),
}  # fmt: skip
DRIP_EVERY_S = 0.2
DRIP_FOR_S = 8.0  # eight times every deadline under test: a server that waits loses


@pytest.mark.parametrize("case", list(SLOW.values()), ids=list(SLOW))
def test_slow_client_is_cut_off_by_a_deadline(pki: Pki, served: Served, case: Drip) -> None:
    if case.tls:
        sock: socket.socket | ssl.SSLSocket = _tls(pki, served.port)
    else:
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    with sock:
        sock.sendall(case.head)
        answer = b""
        closed = False
        for i in range(int(DRIP_FOR_S / DRIP_EVERY_S)):
            try:
                sock.sendall(case.drip[i : i + 1])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
                break
            closed, answer = _closed_by_server(sock, wait_s=DRIP_EVERY_S)
            if closed:
                break
    assert closed, "the server kept a dripping client past every deadline"
    if case.tls and answer:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]


# -- finding 2: connection caps -------------------------------------------------------------


def _handshakes(pki: Pki, port: int, source: str) -> ssl.SSLSocket | None:
    """A completed TLS connection from ``source``, or None if the server closed it at once."""
    try:
        tls = _tls(pki, port, source=source)
    except (ConnectionResetError, ssl.SSLError, OSError):
        return None
    closed, _ = _closed_by_server(tls, wait_s=0.05)
    if closed:
        tls.close()
        return None
    return tls


CAPS = {
    # (source of each new connection, whether it is admitted), in order; caps are 4 and 6.
    "over-the-per-source-cap": (
        [("127.0.0.2", True)] * 4 + [("127.0.0.2", False), ("127.0.0.3", True)], (0, 1)
    ),
    "over-the-worker-cap": (
        [("127.0.0.2", True)] * 3 + [("127.0.0.3", True)] * 3 + [("127.0.0.4", False)], (1, 0)
    ),
}  # fmt: skip


@pytest.mark.parametrize(("steps", "refused"), list(CAPS.values()), ids=list(CAPS))
def test_connections_over_a_cap_are_closed_at_once_and_counted(
    pki: Pki, patient: Served, steps: list[tuple[str, bool]], refused: tuple[int, int]
) -> None:
    served = patient
    with ExitStack() as held:
        for source, admitted in steps:
            tls = _handshakes(pki, served.port, source)
            assert (tls is not None) == admitted, f"connection from {source}"
            if tls is not None:
                held.enter_context(tls)
        assert (served.gate.refused_total, served.gate.refused_per_source) == refused
    # Closed connections give their place back (once the server has seen them go).
    for _ in range(100):
        again = _handshakes(pki, served.port, steps[0][0])
        if again is not None:
            again.close()
            break
        time.sleep(0.1)
    assert again is not None
