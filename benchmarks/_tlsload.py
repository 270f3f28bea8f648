"""mTLS 1.3 load generator and minimal mTLS 1.3 server for the benchmarks.

Both sides use the same stack as the TrustFleet server: pyOpenSSL (on the OpenSSL bundled with
``cryptography``) over memory BIOs in asyncio on uvloop. Every request runs on a fresh TCP +
TLS 1.3 connection with a client certificate and ``Connection: close``.

Run as a script (the benchmark drivers start it in its own process group):

``python _tlsload.py client CONFIG.json``
    Runs the load described by CONFIG (see :func:`run_client`) and prints one JSON document.
``python _tlsload.py serve --port N --chain F --key F --client-ca F``
    Runs one worker of the minimal server (bind with SO_REUSEPORT; start W of them for W
    workers), prints ``ready`` when listening, stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _tlsbio import CHUNK, flush_bio, handshake_step, pem_certs
from _tlsbio import client_context as tls_client_context
from OpenSSL import SSL

SSL_MODE_NO_AUTO_CHAIN = 0x8
_CONNECT_TIMEOUT_S = 10.0
_REQUEST_TIMEOUT_S = 30.0
_MAX_ERROR_SAMPLES = 10


def client_context(*, chain_pem: bytes, key_pem: bytes, server_ca: Path | None) -> SSL.Context:
    """A TLS 1.3-only client context presenting ``chain_pem`` (leaf first) as its certificate."""
    ctx = tls_client_context(key_pem=key_pem, server_ca=server_ca, mode=SSL_MODE_NO_AUTO_CHAIN)
    certs = pem_certs(chain_pem)
    ctx.use_certificate(certs[0])
    for extra in certs[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.check_privatekey()
    return ctx


# -- client ----------------------------------------------------------------------------------


class _ClientProtocol(asyncio.Protocol):
    """One HTTPS request on one fresh connection; resolves ``done`` with (status, body)."""

    def __init__(self, ctx: SSL.Context, request: bytes, done: asyncio.Future[Any]) -> None:
        self._tls = SSL.Connection(ctx, None)
        self._tls.set_connect_state()
        self._request = request
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._handshake_done = False
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._handshake()

    def data_received(self, data: bytes) -> None:
        self._tls.bio_write(data)
        if not self._handshake_done:
            self._handshake()
            if not self._handshake_done:
                return
        while True:
            try:
                chunk = self._tls.recv(CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._finish(eof=True)
                return
            except SSL.Error as exc:
                self._fail(f"TLS error while reading: {exc}")
                return
            self._buf += chunk
        self._finish(eof=False)

    def eof_received(self) -> bool | None:
        self._finish(eof=True)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._finish(eof=True)

    def _handshake(self) -> None:
        if not handshake_step(self._tls, flush=self._flush, fail=self._fail):
            return
        self._handshake_done = True
        self._tls.send(self._request)
        self._flush()

    def _flush(self) -> None:
        flush_bio(self._tls, self._transport)

    def _finish(self, *, eof: bool) -> None:
        if self._done.done():
            return
        head_end = self._buf.find(b"\r\n\r\n")
        if head_end < 0:
            if eof:
                self._fail("connection closed before a complete response")
            return
        head = bytes(self._buf[:head_end]).decode("latin-1")
        lines = head.split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(f"bad status line {lines[0][:80]!r}")
            return
        length: int | None = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = bytes(self._buf[head_end + 4 :])
        if length is not None and len(body) < length and not eof:
            return
        if length is None and not eof:
            return
        self._done.set_result((status, body))
        if self._transport is not None:
            self._transport.close()

    def _fail(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_exception(ConnectionError(reason))
        if self._transport is not None:
            self._transport.abort()


async def one_request(ctx: SSL.Context, host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Connect, handshake, send ``request``, return (status, body) of the response."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: _ClientProtocol(ctx, request, done), host, port),
        _CONNECT_TIMEOUT_S,
    )
    try:
        return await asyncio.wait_for(done, _REQUEST_TIMEOUT_S)
    finally:
        transport.abort() if not done.done() else None


def build_request(
    *, host: str, port: int, method: str, path: str, body: bytes, ctype: str
) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class _Stats:
    ok: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    started: int = 0


async def _worker(
    *,
    cfg: dict[str, Any],
    contexts: list[SSL.Context],
    requests: list[list[bytes]],
    stats: _Stats,
    offset: int,
    t_measure: float,
    t_end: float,
) -> None:
    host, port = cfg["host"], int(cfg["port"])
    i = offset
    while True:
        t0 = time.time()
        if t0 >= t_end:
            return
        dev = i % len(contexts)
        reqs = requests[dev]
        req = reqs[(i // len(contexts)) % len(reqs)]
        i += cfg["stride"]
        try:
            status, body = await one_request(contexts[dev], host, port, req)
            err = None if status == 200 else f"HTTP {status}: {body[:200]!r}"
        except (OSError, TimeoutError, ConnectionError, SSL.Error) as exc:
            status, err = 0, f"{type(exc).__name__}: {exc}"
        t1 = time.time()
        if t_measure <= t1 <= t_end:
            key = str(status)
            stats.statuses[key] = stats.statuses.get(key, 0) + 1
            if err is None:
                stats.ok += 1
                stats.latencies_ms.append((t1 - t0) * 1000.0)
            else:
                stats.errors += 1
                if len(stats.error_samples) < _MAX_ERROR_SAMPLES:
                    stats.error_samples.append(err)


async def _run_client_async(cfg: dict[str, Any]) -> dict[str, Any]:
    server_ca = Path(cfg["server_ca"]) if cfg.get("server_ca") else None
    contexts: list[SSL.Context] = []
    requests: list[list[bytes]] = []
    host, port = cfg["host"], int(cfg["port"])
    for dev in cfg["devices"]:
        contexts.append(
            client_context(
                chain_pem=dev["chain_pem"].encode(),
                key_pem=dev["key_pem"].encode(),
                server_ca=server_ca,
            )
        )
        requests.append(
            [
                build_request(
                    host=host,
                    port=port,
                    method=cfg["method"],
                    path=cfg["path"],
                    body=b.encode(),
                    ctype=cfg["content_type"],
                )
                for b in dev["bodies"]
            ]
        )
    stats = _Stats()
    t_start = float(cfg["t_start"])
    t_measure = t_start + float(cfg["warmup"])
    t_end = t_measure + float(cfg["duration"])
    await asyncio.sleep(max(0.0, t_start - time.time()))
    loop = asyncio.get_running_loop()
    cpu: dict[str, float] = {}
    loop.call_at(loop.time() + (t_measure - time.time()), _mark_cpu, cpu, "start")
    loop.call_at(loop.time() + (t_end - time.time()), _mark_cpu, cpu, "end")
    conc = int(cfg["concurrency"])
    base = int(cfg["proc_index"]) * conc
    cfg = {**cfg, "stride": conc * int(cfg["procs"])}
    await asyncio.gather(
        *(
            _worker(
                cfg=cfg,
                contexts=contexts,
                requests=requests,
                stats=stats,
                offset=base + k,
                t_measure=t_measure,
                t_end=t_end,
            )
            for k in range(conc)
        )
    )
    return {
        "ok": stats.ok,
        "errors": stats.errors,
        "statuses": stats.statuses,
        "error_samples": stats.error_samples,
        "latencies_ms": [round(x, 3) for x in stats.latencies_ms],
        "cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0),
    }


def _mark_cpu(cpu: dict[str, float], key: str) -> None:
    cpu[key] = time.process_time()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_client(config_path: Path) -> dict[str, Any]:
    """Run the load described by a JSON config file.

    Keys: host, port, method, path, content_type, server_ca (or null), devices (list of
    {chain_pem, key_pem, bodies}), concurrency, procs, proc_index, t_start (epoch seconds),
    warmup, duration.
    """
    cfg = json.loads(config_path.read_text())
    loop = _new_loop()
    try:
        return loop.run_until_complete(_run_client_async(cfg))
    finally:
        loop.close()


# -- minimal server --------------------------------------------------------------------------

_OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
    b"connection: close\r\n\r\nok"
)


class _BareProtocol(asyncio.Protocol):
    """Handshake, read one request (headers + Content-Length body), answer ``200 ok``, close."""

    def __init__(self, ctx: SSL.Context) -> None:
        self._ctx = ctx
        self._tls: SSL.Connection | None = None
        self._transport: asyncio.Transport | None = None
        self._handshake_done = False
        self._buf = bytearray()
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._tls = SSL.Connection(self._ctx, None)
        self._tls.set_accept_state()

    def data_received(self, data: bytes) -> None:
        if self._closed or self._tls is None:
            return
        self._tls.bio_write(data)
        if not self._handshake_done:
            try:
                self._tls.do_handshake()
            except SSL.WantReadError:
                self._flush()
                return
            except SSL.Error:
                self._flush()
                self._abort()
                return
            self._handshake_done = True
            self._tls.get_peer_certificate()  # what the real server reads (cheap)
            self._flush()
        while True:
            try:
                self._buf += self._tls.recv(CHUNK)
            except SSL.WantReadError:
                break
            except SSL.Error:
                self._abort()
                return
        if self._request_complete():
            self._respond()

    def _request_complete(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in bytes(self._buf[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return len(self._buf) - end - 4 >= length

    def _respond(self) -> None:
        assert self._tls is not None
        self._tls.send(_OK)
        with contextlib.suppress(SSL.Error):
            self._tls.shutdown()
        self._flush()
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def _flush(self) -> None:
        assert self._tls is not None
        flush_bio(self._tls, self._transport)

    def _abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()


def serve_bare(*, port: int, chain: Path, key: Path, client_ca: Path) -> None:
    """One worker of the minimal mTLS 1.3 server; same TLS context as the TrustFleet server."""
    from trustfleet.server._serve import listen_socket
    from trustfleet.server._tls import TlsServerConfig, make_server_context

    ctx = make_server_context(TlsServerConfig(cert_chain=chain, key=key, client_ca=client_ca))
    sock: socket.socket = listen_socket("127.0.0.1", port, reuse_port=True)
    loop = _new_loop()
    stop = asyncio.Event()

    async def main() -> None:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await loop.create_server(lambda: _BareProtocol(ctx), sock=sock)
        print("ready", flush=True)
        await stop.wait()
        server.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("config", type=Path)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--chain", type=Path, required=True)
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--client-ca", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "client":
        random.seed()
        json.dump(run_client(args.config), sys.stdout)
        sys.stdout.write("\n")
        return 0
    serve_bare(port=args.port, chain=args.chain, key=args.key, client_ca=args.client_ca)
    return 0


if __name__ == "__main__":
    sys.exit(main())
