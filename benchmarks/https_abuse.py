"""The HTTPS front end under abuse (issue 9 §3): three attacks against a real `server run`.

Runs `trustfleet server run` on a fresh home on free loopback ports (default settings, one
HTTPS worker) and attacks it from loopback, each attack bounded in count and time:

1. pipelining: a client with only an IDevID asks for a 64 MiB `/tuf/targets/…` file, never
   reads, and keeps sending pipelined requests (at most 512 MiB, until its sends stall for 2 s
   or 5 s pass). Reports the worker's RSS before and its peak during the attack, and how many
   bytes of requests the server took.
2. slowloris: `--slow` connections without a certificate from one address, each declaring an
   8,000-byte body and sending one byte of it every 5 s for at most 30 s. Reports how many were
   admitted, the worker's peak open fds, and how long the admitted ones stayed open.
3. enrollment flood: `--flood` anonymous bad `simpleenroll` requests on keep-alive connections.
   Reports the `enrollment.refused` events written during the flood, and after the server was
   stopped (its shutdown writes the summaries of windows still open), with their counts.

    .venv/bin/python benchmarks/https_abuse.py [--slow 300] [--flood 500] [--json]

Run it with the code of another commit on PYTHONPATH to get that commit's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, emit, interrupts_and_deadline, serve_home
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.httpsprobe import (
    listening_pids,
    open_fds,
    pipeline_unread,
    rss_bytes,
    sampling,
    tls_context,
)
from trustfleet.services.factory import sign_csr
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.sim.process import ManagedProcess, free_port

MAX_TIME_S = 170.0
WAIT_S = 60.0
TARGET = "bench/big.bin"
TARGET_BYTES = 64 << 20
PUSH_MAX_BYTES = 512 << 20
PUSH_MAX_S = 5.0
DRIP_EVERY_S = 5.0
HOLD_S = 30.0
MIB = 1 << 20


# -- attack 1 ------------------------------------------------------------------------------


def pipelining(port: int, bundle: Path, idevid: tuple[Path, Path]) -> dict[str, Any]:
    """Ask for a large target, never read it, keep sending requests."""
    (worker,) = listening_pids(port)
    before = rss_bytes(worker)
    with sampling(lambda: rss_bytes(worker)) as rss:
        pushed = pipeline_unread(
            tls_context(bundle, cert=idevid[0], key=idevid[1]),
            port,
            path=f"/tuf/targets/{TARGET}",
            max_bytes=PUSH_MAX_BYTES,
            max_s=PUSH_MAX_S,
            source="127.0.0.2",
            before_close=lambda: time.sleep(0.2),
        )
    return {
        "worker_rss_before_mib": round(before / MIB, 1),
        "worker_rss_peak_mib": round(max(rss) / MIB, 1),
        "requests_taken_mib": round(pushed / MIB, 1),
    }


# -- attack 2 ------------------------------------------------------------------------------


async def _slow_one(port: int, ctx: ssl.SSLContext) -> tuple[str, float]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost", local_addr=("127.0.0.3", 0)
            ),
            timeout=15,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return "refused", time.monotonic() - started
    try:
        writer.write(
            b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nhost: localhost\r\n"
            b"content-type: application/pkcs10\r\ncontent-length: 8000\r\n\r\n"
        )
        while time.monotonic() - started < HOLD_S:
            writer.write(b"M")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1024), DRIP_EVERY_S)
                return "closed", time.monotonic() - started  # an answer or EOF: the server ended it
        return "open", time.monotonic() - started
    except (OSError, ssl.SSLError):
        return "closed", time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def slowloris(port: int, bundle: Path, connections: int) -> dict[str, Any]:
    """Many connections, each dripping one byte of a declared body every few seconds."""
    (worker,) = listening_pids(port)
    ctx = tls_context(bundle)
    fds_before = open_fds(worker)

    async def attack() -> list[tuple[str, float]]:
        return await asyncio.gather(*(_slow_one(port, ctx) for _ in range(connections)))

    with sampling(lambda: open_fds(worker)) as fds:
        outcomes = asyncio.run(attack())
    held = [s for what, s in outcomes if what != "refused"]
    return {
        "connections": connections,
        "admitted": len(held),
        "refused_at_once": sum(1 for what, _ in outcomes if what == "refused"),
        "still_open_when_client_gave_up": sum(1 for what, _ in outcomes if what == "open"),
        "worker_fds_before": fds_before,
        "worker_fds_peak": max(fds),
        "open_s_median": round(statistics.median(held), 1) if held else 0.0,
        "open_s_max": round(max(held), 1) if held else 0.0,
        "client_gave_up_after_s": HOLD_S,
    }


# -- attack 3 ------------------------------------------------------------------------------


def _refusals(rt: Runtime, after_id: int) -> list[Any]:
    events: list[Any] = []
    with rt.uow.begin(read_only=True) as tx:
        while page := tx.events.list(after_id=after_id, limit=1000):
            events += [e for e in page if e.type == "enrollment.refused"]
            after_id = page[-1].id
    return events


def _last_event_id(rt: Runtime) -> int:
    last = 0
    with rt.uow.begin(read_only=True) as tx:
        while page := tx.events.list(after_id=last, limit=1000):
            last = page[-1].id
    return last


def flood(port: int, bundle: Path, requests: int) -> list[int]:
    """Anonymous bad simpleenroll requests on keep-alive connections; returns the statuses."""
    statuses = []
    conn = None
    for i in range(requests):
        if i % 100 == 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPSConnection(
                "localhost",
                port,
                context=tls_context(bundle),
                timeout=30,
                source_address=("127.0.0.4", 0),
            )
        assert conn is not None
        conn.request(
            "POST", "/.well-known/est/simpleenroll", b"MAA=", {"content-type": "application/pkcs10"}
        )
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    if conn is not None:
        conn.close()
    return statuses


def _flood_figures(events: list[Any], during: int, statuses: list[int]) -> dict[str, Any]:
    return {
        "requests": len(statuses),
        "statuses": sorted(set(statuses)),
        "events_during_flood": during,
        "events_after_stop": len(events),
        "refusals_counted_in_events": sum(int(e.details.get("count", 1)) for e in events),
    }


# -- driver --------------------------------------------------------------------------------


def _csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _idevid(rt: Runtime, work: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    made = sign_csr(
        rt, csr_bytes=_csr(key, "abuse-bench-0001"), model="bench", now=datetime.now(UTC)
    )
    cert, key_file = work / "idevid.pem", work / "idevid.key"
    cert.write_bytes(made.certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


def run(*, slow: int, flood_requests: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tf-bench-abuse-"))
    api_port, mqtt_port = free_port(), free_port()
    server: ManagedProcess | None = None
    try:
        home = work / "home"
        init_server_home(
            home,
            options=HomeOptions(api_port=api_port, mqtt_port=mqtt_port, pins_out=work / "pins"),
            now=datetime.now(UTC),
        )
        target = home / "ota" / "repo" / "targets" / TARGET
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            out.truncate(TARGET_BYTES)
        bundle = home / "public" / "ca-bundle.pem"
        server = serve_home(home, ready=lambda: bool(listening_pids(api_port)), timeout_s=WAIT_S)
        rt = Runtime.open(load_server_settings(home))
        try:
            idevid = _idevid(rt, work)
            print("1/3 pipelining without reading …", file=sys.stderr)
            result: dict[str, Any] = {"pipelining": pipelining(api_port, bundle, idevid)}
            print(f"2/3 slowloris, {slow} connections (≤ {HOLD_S:.0f} s) …", file=sys.stderr)
            result["slowloris"] = slowloris(api_port, bundle, slow)
            print(f"3/3 enrollment flood, {flood_requests} requests …", file=sys.stderr)
            before = _last_event_id(rt)
            statuses = flood(api_port, bundle, flood_requests)
            during = len(_refusals(rt, before))
            server.stop(timeout_s=30)  # the worker writes open windows' summaries
            server = None
            events = _refusals(rt, before)
            result["enrollment_flood"] = _flood_figures(events, during, statuses)
        finally:
            rt.close()
        return result
    finally:
        if server is not None:
            server.stop(timeout_s=30)
        shutil.rmtree(work, ignore_errors=True)


def _print(result: dict[str, Any]) -> None:
    p, s, f = result["pipelining"], result["slowloris"], result["enrollment_flood"]
    print("pipelining (IDevID, 64 MiB target unread, requests pushed ≤ 512 MiB / 5 s):")
    print(
        f"  worker RSS {p['worker_rss_before_mib']} MiB before, "
        f"{p['worker_rss_peak_mib']} MiB peak; the client pushed {p['requests_taken_mib']} MiB"
    )
    print(
        f"slowloris ({s['connections']} connections from one address, 1 byte / "
        f"{DRIP_EVERY_S:.0f} s of an 8,000-byte body):"
    )
    print(
        f"  admitted {s['admitted']}, refused at once {s['refused_at_once']}; worker fds "
        f"{s['worker_fds_before']} before, {s['worker_fds_peak']} peak"
    )
    print(
        f"  admitted ones open for median {s['open_s_median']} s, max {s['open_s_max']} s; "
        f"{s['still_open_when_client_gave_up']} still open when the client gave up "
        f"at {s['client_gave_up_after_s']:.0f} s"
    )
    print(
        f"enrollment flood ({f['requests']} anonymous bad simpleenroll, statuses {f['statuses']}):"
    )
    print(
        f"  enrollment.refused events: {f['events_during_flood']} during the flood, "
        f"{f['events_after_stop']} after the server stopped, counting "
        f"{f['refusals_counted_in_events']} refusals"
    )


def main() -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--slow", type=int, default=300, help="slow connections (default 300)")
    parser.add_argument("--flood", type=int, default=500, help="flood requests (default 500)")
    args = parser.parse_args()
    if not 1 <= args.slow <= 1000 or not 1 <= args.flood <= 2000:
        parser.error("--slow must be 1..1000 and --flood 1..2000")
    with interrupts_and_deadline(MAX_TIME_S):
        result = run(slow=args.slow, flood_requests=args.flood)
    emit(result, as_json=args.json, show=_print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
