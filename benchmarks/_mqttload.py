"""Lean MQTT-over-mutual-TLS-1.3 load generator for benchmarks/fleet.py.

One process holds thousands of simulated devices (or a few fleet-service connections) on
asyncio + uvloop, with TLS through pyOpenSSL (the OpenSSL bundled with ``cryptography``) over
memory BIOs. Every device presents its own certificate (CN = device id, issued by the device
CA); all share one software P-256 key, set once on the TLS context. The few MQTT packets needed
(CONNECT/CONNACK, PUBLISH/PUBACK QoS 1, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT; MQTT
3.1.1 or 5) are encoded here.

Run as a script, driven over stdin/stdout by benchmarks/fleet.py (one JSON object per line)::

    python _mqttload.py devices CONFIG.json
    python _mqttload.py service CONFIG.json

Commands (stdin) and answers (stdout, one line each):

* ``{"cmd": "connect"}`` -> connect every device (bounded concurrency), answer when all are
  connected or ``connect_timeout_s`` passes: connected, failed attempts, first/last CONNACK
  times, connect latency percentiles.
* ``{"cmd": "status"}`` -> connected count, when the count last reached "all", reconnects.
* ``{"cmd": "publish", "rate": R, "duration": S, "devices": M}`` (devices only) -> the first M
  devices of this process publish QoS 1 telemetry at R msg/s in total for S seconds; answer
  after every PUBACK arrived (or ``drain_timeout_s``): sent, acked, unacked, skipped.
* ``{"cmd": "reset"}`` / ``{"cmd": "stats"}`` (service only) -> clear / report received
  messages, duplicates and latency percentiles.
* ``{"cmd": "quit"}`` -> DISCONNECT every connection, answer, exit.

Devices reconnect on their own after an unexpected loss, with exponential backoff and full
jitter (bounded by ``backoff_max_s``), at most ``concurrency`` handshakes in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import raise_nofile
from _received import Received, pct, rss_kib
from _tlsbio import CHUNK, client_context, flush_bio, handshake_step, pem_certs
from OpenSSL import SSL, crypto

_IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the port at connect(), per 4-tuple
_SSL_MODE_NO_AUTO_CHAIN = 0x8
_SSL_MODE_RELEASE_BUFFERS = 0x10
_MAX_ERROR_SAMPLES = 10

# -- MQTT encoding ---------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(
    client_id: str, *, keepalive: int, v5: bool, receive_maximum: int | None = None
) -> bytes:
    """CONNECT with clean session/start, no username/password (the broker uses the CN)."""
    head = _str("MQTT") + bytes([5 if v5 else 4, 0x02]) + struct.pack("!H", keepalive)
    if v5:
        props = b"" if receive_maximum is None else b"\x21" + struct.pack("!H", receive_maximum)
        head += _varint(len(props)) + props
    return _packet(0x10, head + _str(client_id))


def publish_qos1(topic: bytes, mid: int, payload: bytes, *, v5: bool) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid)
    if v5:
        body += b"\x00"
    return _packet(0x32, body + payload)


def subscribe_packet(mid: int, topic: str, *, v5: bool) -> bytes:
    body = struct.pack("!H", mid) + (b"\x00" if v5 else b"") + _str(topic) + b"\x01"
    return _packet(0x82, body)


def puback(mid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", mid)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def _read_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove every complete MQTT packet from ``buf``; return (first byte, body) pairs."""
    frames = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        mult, length, i = 1, 0, pos + 1
        while True:
            if i >= n:
                del buf[:pos]
                return frames
            byte = buf[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if i + length > n:
            break
        frames.append((buf[pos], bytes(buf[i : i + length])))
        pos = i + length
    del buf[:pos]
    return frames


# -- TLS -------------------------------------------------------------------------------------


def tls_context(*, key_pem: bytes, server_ca: Path | None) -> SSL.Context:
    """TLS 1.3-only client context with the shared key; each connection sets its own cert."""
    return client_context(
        key_pem=key_pem,
        server_ca=server_ca,
        mode=_SSL_MODE_NO_AUTO_CHAIN | _SSL_MODE_RELEASE_BUFFERS,
    )


# -- one client ------------------------------------------------------------------------------


class Client:
    """One simulated device or service connection: survives reconnects."""

    __slots__ = (
        "acked",
        "cert",
        "conn",
        "connected",
        "fleet",
        "inflight",
        "mid",
        "name",
        "seq",
        "topic",
        "wanted",
    )

    def __init__(self, fleet: Fleet, name: str, cert: crypto.X509) -> None:
        self.fleet = fleet
        self.name = name
        self.cert = cert
        self.topic = f"tf/v1/d/{name}/telemetry".encode()
        self.conn: Conn | None = None
        self.connected = False
        self.wanted = True
        self.inflight: dict[int, float] = {}
        self.mid = 0
        self.seq = 0
        self.acked = 0

    def next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid


class Conn(asyncio.Protocol):
    """One TCP + TLS 1.3 connection of a :class:`Client`."""

    def __init__(self, client: Client, done: asyncio.Future[None]) -> None:
        fleet = client.fleet
        self.client = client
        self.fleet = fleet
        self.tls = SSL.Connection(fleet.ctx, None)
        self.tls.use_certificate(client.cert)
        self.tls.set_connect_state()
        self.transport: asyncio.Transport | None = None
        self.hs_done = False
        self.done = done  # resolved at CONNACK (or failure)
        self.buf = bytearray()
        self.last_tx = time.monotonic()
        self.closed = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._handshake()

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        try:
            tls.bio_write(data)
        except SSL.Error as exc:
            self._fail(f"TLS error: {exc}")
            return
        if not self.hs_done:
            self._handshake()
            if not self.hs_done:
                return
        buf = self.buf
        while True:
            try:
                buf += tls.recv(CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._fail("TLS close_notify from the broker")
                return
            except SSL.Error as exc:
                self._fail(f"TLS error while reading: {exc}")
                return
        if buf:
            self.fleet.on_frames(self, _read_frames(buf))
            self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost before CONNACK: {exc}"))
        self.fleet.on_lost(self)

    # sending
    def _handshake(self) -> None:
        if not handshake_step(self.tls, flush=self.flush, fail=self._fail):
            return
        self.hs_done = True
        self.send(self.fleet.connect_bytes(self.client))
        self.flush()

    def send(self, data: bytes) -> None:
        """Queue ``data`` in TLS; call :meth:`flush` to write it out."""
        try:
            self.tls.send(data)
        except SSL.Error as exc:
            self._fail(f"TLS error while writing: {exc}")
        self.last_tx = time.monotonic()

    def flush(self) -> None:
        flush_bio(self.tls, self.transport)

    def close(self, *, graceful: bool) -> None:
        if self.closed or self.transport is None:
            return
        if graceful and self.hs_done:
            self.send(DISCONNECT)
            self.flush()
            self.transport.close()
        else:
            self.transport.abort()

    def _fail(self, reason: str) -> None:
        self.fleet.note_error(reason)
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()


# -- a process's set of clients --------------------------------------------------------------


class Fleet:
    """Every client of this load process and their counters."""

    def __init__(self, cfg: dict[str, Any], *, service: bool) -> None:
        self.cfg = cfg
        self.service = service
        self.v5 = bool(cfg["v5"])
        self.host, self.port = cfg["host"], int(cfg["port"])
        self.source_ip = cfg.get("source_ip") or None
        self.keepalive = int(cfg["keepalive_s"])
        self.ctx = tls_context(
            key_pem=Path(cfg["key"]).read_bytes(),
            server_ca=Path(cfg["server_ca"]) if cfg.get("server_ca") else None,
        )
        certs = json.loads(Path(cfg["certs"]).read_text())
        self.clients = [Client(self, name, pem_certs(pem.encode())[0]) for name, pem in certs]
        self.sem = asyncio.Semaphore(int(cfg["concurrency"]))
        self.connected = 0
        self.t_full = 0.0  # when ``connected`` last reached len(clients)
        self.first_connack = 0.0
        self.last_connack = 0.0
        self.connect_latency: list[float] = []
        self.attempts = 0
        self.failures = 0
        self.reconnects = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()
        # publishing
        self.sent = 0
        self.acked = 0
        self.skipped = 0
        # service receiving
        self.inbox = Received()
        self.suback_codes: list[int] = []

    # connection management
    def connect_bytes(self, client: Client) -> bytes:
        # Service connections share one certificate; each needs its own client id, or the
        # broker takes one over with the next (and in-flight messages are lost).
        client_id = client.name if not self.cfg.get("subscribe") else f"{client.name}-{os.getpid()}"
        return connect_packet(
            client_id,
            keepalive=self.keepalive,
            v5=self.v5,
            receive_maximum=self.cfg.get("receive_maximum"),
        )

    def note_error(self, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < _MAX_ERROR_SAMPLES:
            self.errors.append(reason)

    def start_all(self) -> None:
        for client in self.clients:
            self._spawn(self._keep_connected(client, first=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _keep_connected(self, client: Client, *, first: bool) -> None:
        """Connect ``client`` until it holds a connection (backoff with full jitter)."""
        attempt = 0
        base, cap = float(self.cfg["backoff_base_s"]), float(self.cfg["backoff_max_s"])
        if not first:
            await asyncio.sleep(random.uniform(0, base))
        while client.wanted and not self.closing:
            if await self._connect_once(client):
                return
            self.failures += 1
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(cap, base * 2**attempt)))

    async def _connect_once(self, client: Client) -> bool:
        loop = asyncio.get_running_loop()
        async with self.sem:
            if self.closing:
                return False
            self.attempts += 1
            t0 = time.monotonic()
            done: asyncio.Future[None] = loop.create_future()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            transport = None
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.source_ip:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((self.source_ip, 0))
                async with asyncio.timeout(float(self.cfg["connect_attempt_timeout_s"])):
                    await loop.sock_connect(sock, (self.host, self.port))
                    transport, proto = await loop.create_connection(
                        lambda: Conn(client, done), sock=sock
                    )
                    await done
            except (OSError, TimeoutError, ConnectionError, SSL.Error) as exc:
                if not isinstance(exc, ConnectionError):
                    self.note_error(f"{type(exc).__name__}: {exc}")
                if transport is not None:
                    transport.abort()
                else:
                    sock.close()
                return False
            client.conn = proto  # type: ignore[assignment]
            client.connected = True
            self.connected += 1
            now = time.time()
            self.first_connack = self.first_connack or now
            self.last_connack = now
            self.connect_latency.append((time.monotonic() - t0) * 1000.0)
            if self.connected == len(self.clients):
                self.t_full = now
            if self.service:
                proto.send(subscribe_packet(1, self.cfg["subscribe"], v5=self.v5))
                proto.flush()
            return True

    def on_lost(self, conn: Conn) -> None:
        client = conn.client
        if client.conn is not conn:
            return
        client.conn = None
        if client.connected:
            client.connected = False
            self.connected -= 1
        client.inflight.clear()  # clean session: unacked messages are abandoned
        if client.wanted and not self.closing:
            self.reconnects += 1
            self._spawn(self._keep_connected(client, first=False))

    def on_frames(self, conn: Conn, frames: list[tuple[int, bytes]]) -> None:
        client = conn.client
        acks = []
        for first, body in frames:
            kind = first >> 4
            if kind == 4:  # PUBACK
                mid = (body[0] << 8) | body[1]
                if client.inflight.pop(mid, None) is not None:
                    self.acked += 1
            elif kind == 3:  # PUBLISH (service)
                mid = self._on_publish(first, body)
                if mid is not None:
                    acks.append(puback(mid))
            elif kind == 2:  # CONNACK
                rc = body[1]
                if rc != 0:
                    conn._fail(f"CONNACK refused: code {rc}")
                elif not conn.done.done():
                    conn.done.set_result(None)
            elif kind == 9:  # SUBACK
                props = 0
                pos = 2
                if self.v5:
                    props, pos = _decode_varint(body, pos)
                self.suback_codes.extend(body[pos + props :])
            elif kind == 14:  # DISCONNECT from the broker (v5)
                conn._fail(f"DISCONNECT from the broker: {body[:1].hex()}")
            # PINGRESP (13): nothing to do
        if acks:
            conn.send(b"".join(acks))

    def _on_publish(self, first: int, body: bytes) -> int | None:
        now = time.time()
        tlen = (body[0] << 8) | body[1]
        topic = body[2 : 2 + tlen]
        pos = 2 + tlen
        mid = None
        if first & 0x06:
            mid = (body[pos] << 8) | body[pos + 1]
            pos += 2
        if self.v5:
            plen, pos = _decode_varint(body, pos)
            pos += plen
        self.inbox.take(topic.decode(), body[pos:], now)
        return mid

    async def pinger(self) -> None:
        """PINGREQ on every connection idle for half the keepalive."""
        while True:
            await asyncio.sleep(2.0)
            limit = time.monotonic() - self.keepalive / 2
            for client in self.clients:
                conn = client.conn
                if conn is not None and client.connected and conn.last_tx < limit:
                    conn.send(PINGREQ)
                    conn.flush()

    # publishing
    async def publish(self, *, rate: float, duration: float, devices: int) -> dict[str, Any]:
        pubs = self.clients[:devices]
        max_inflight = int(self.cfg["max_inflight"])
        sent0, acked0, skipped0 = self.sent, self.acked, self.skipped
        cpu0 = time.process_time()
        t0 = time.monotonic()
        t_end = t0 + duration
        i = 0
        done = 0
        dumps = json.dumps
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            due = int((now - t0) * rate) - done
            if due > 0:
                ts = datetime.now(UTC).isoformat(timespec="microseconds")
                touched: dict[int, Conn] = {}
                for _ in range(due):
                    client = pubs[i % len(pubs)]
                    i += 1
                    done += 1
                    conn = client.conn
                    if conn is None or not client.connected or len(client.inflight) >= max_inflight:
                        self.skipped += 1
                        continue
                    client.seq += 1
                    payload = dumps(
                        {"ts": ts, "seq": client.seq, "metrics": {"temp_c": 21.5, "n": i}},
                        separators=(",", ":"),
                    ).encode()
                    mid = client.next_mid()
                    client.inflight[mid] = now
                    conn.send(publish_qos1(client.topic, mid, payload, v5=self.v5))
                    touched[id(conn)] = conn
                    self.sent += 1
                for conn in touched.values():
                    conn.flush()
            await asyncio.sleep(0.005)
        t_sent = time.monotonic()
        drain_deadline = t_sent + float(self.cfg["drain_timeout_s"])
        while time.monotonic() < drain_deadline and any(c.inflight for c in pubs):
            await asyncio.sleep(0.05)
        return {
            "sent": self.sent - sent0,
            "acked": self.acked - acked0,
            "unacked": sum(len(c.inflight) for c in pubs),
            "skipped": self.skipped - skipped0,
            "send_window_s": t_sent - t0,
            "drain_s": time.monotonic() - t_sent,
            "cpu_s": time.process_time() - cpu0,
        }

    def status(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "connected": self.connected,
            "t_full": self.t_full,
            "attempts": self.attempts,
            "failures": self.failures,
            "reconnects": self.reconnects,
            "errors": self.error_count,
            "error_samples": self.errors,
            "rss_kib": rss_kib(),
            "cpu_s": time.process_time(),
        }

    def service_stats(self) -> dict[str, Any]:
        return {**self.inbox.stats(), "suback_codes": sorted(set(self.suback_codes))}

    def reset_service(self) -> None:
        self.inbox.reset()

    async def quit(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        for client in self.clients:
            client.wanted = False
            if client.conn is not None:
                client.conn.close(graceful=True)
        await asyncio.sleep(0.5)


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    mult = 1
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return value, pos


# -- command loop ----------------------------------------------------------------------------


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _wait_connected(fleet: Fleet, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while fleet.connected < len(fleet.clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def _main_async(cfg: dict[str, Any], *, service: bool) -> None:
    fleet = Fleet(cfg, service=service)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pinger = loop.create_task(fleet.pinger())
    _answer({"ready": True, "clients": len(fleet.clients)})
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "connect":
                t0 = time.time()
                fleet.start_all()
                await _wait_connected(fleet, float(cfg["connect_timeout_s"]))
                lat = sorted(fleet.connect_latency)
                _answer(
                    {
                        **fleet.status(),
                        "t_start": t0,
                        "first_connack": fleet.first_connack,
                        "last_connack": fleet.last_connack,
                        "p50_ms": pct(lat, 50),
                        "p99_ms": pct(lat, 99),
                    }
                )
            elif name == "status":
                _answer(fleet.status())
            elif name == "wait_all":
                await _wait_connected(fleet, float(cmd["timeout_s"]))
                _answer(fleet.status())
            elif name == "publish":
                _answer(
                    await fleet.publish(
                        rate=float(cmd["rate"]),
                        duration=float(cmd["duration"]),
                        devices=int(cmd["devices"]),
                    )
                )
            elif name == "reset":
                fleet.reset_service()
                _answer({"ok": True})
            elif name == "stats":
                _answer(fleet.service_stats())
            elif name == "quit":
                await fleet.quit()
                _answer(fleet.status())
                break
    finally:
        pinger.cancel()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("devices", "service"):
        print("usage: _mqttload.py devices|service CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[1]).read_text())
    raise_nofile(int(cfg.get("nofile", 1024)))
    random.seed()
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_main_async(cfg, service=argv[0] == "service"))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
