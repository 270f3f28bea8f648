"""Independent clients and probes of the HTTPS front end, shared by its tests and benchmarks.

The clients use Python's ``ssl`` (system OpenSSL), not the server's stack; the probes read a
worker's state from /proc (which process listens, its resident memory, its open descriptors).
Used by tests/integration/server and benchmarks/https_abuse.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "listening_pids",
    "open_fds",
    "pipeline_unread",
    "raw_exchange",
    "rss_bytes",
    "sampling",
    "tls_context",
]

HOST = "127.0.0.1"
SERVER_NAME = "localhost"


def tls_context(ca: Path, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca``, presenting ``cert``/``key`` when given."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), None if key is None else str(key))
    return ctx


def raw_exchange(ctx: ssl.SSLContext, port: int, payload: bytes, *, read_s: float = 3.0) -> bytes:
    """Send ``payload`` on one TLS connection and read until the server closes it."""
    chunks = []
    with (
        socket.create_connection((HOST, port), timeout=read_s) as tcp,
        ctx.wrap_socket(tcp, server_hostname=SERVER_NAME) as tls,
    ):
        tls.sendall(payload)
        try:
            while chunk := tls.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            pass
    return b"".join(chunks)


def pipeline_unread(
    ctx: ssl.SSLContext,
    port: int,
    *,
    path: str,
    max_bytes: int,
    max_s: float | None = None,
    source: str | None = None,
    before_close: Callable[[], None] | None = None,
) -> int:
    """Pipeline ``GET path`` requests on one connection without reading any answer.

    Stops when ``max_bytes`` were sent, ``max_s`` passed, or the sends stall or fail (the
    server stopped reading or closed); then runs ``before_close`` on the open connection.

    Returns:
        The bytes of requests the server took.
    """
    request = f"GET {path} HTTP/1.1\r\nhost: {SERVER_NAME}\r\n\r\n".encode()
    batch = request * (65536 // len(request))
    pushed = 0
    started = time.monotonic()
    tcp = socket.create_connection(
        (HOST, port), timeout=2, source_address=None if source is None else (source, 0)
    )
    with ctx.wrap_socket(tcp, server_hostname=SERVER_NAME) as tls:
        try:
            while pushed < max_bytes and (max_s is None or time.monotonic() - started < max_s):
                tls.sendall(batch)
                pushed += len(batch)
        except (TimeoutError, ssl.SSLError, OSError):
            pass
        if before_close is not None:
            before_close()
    return pushed


def listening_pids(port: int) -> list[int]:
    """The processes holding a listening TCP socket on ``port`` (HTTPS workers), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
    return sorted(pids)


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def sampling(sample: Callable[[], int], *, every_s: float = 0.05) -> Iterator[list[int]]:
    """Sample ``sample()`` every ``every_s`` in a thread while the block runs; yields the
    samples (the list grows until the block ends)."""
    samples = [sample()]
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every_s):
            with contextlib.suppress(OSError):
                samples.append(sample())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()
