"""EST enrollment throughput over fresh mTLS 1.3 connections, against a bare-handshake baseline.

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. ``trustfleet server init`` makes a home (CA keys in SoftHSM2, SQLite store); ``--devices``
   software-key devices are registered through the Python API (IDevID from the manufacturing
   CA), and their enrollment CSRs are made in advance. Each device enrolls once: an enrolled
   device's IDevID is refused (docs/adr/0008-one-ldevid-per-device.md), so ``--devices`` must
   cover (warmup + duration) x the rate; once the list wraps around, requests get ``403
   est.auth.already_enrolled`` and count as errors.
2. A minimal mTLS 1.3 server (same pyOpenSSL/uvloop stack and TLS context as the real server,
   same worker count; it handshakes, reads the request and answers ``200 ok``) is driven by
   the load generator: bare handshakes/s.
3. ``trustfleet server run --workers W`` is driven by the same load generator with the same
   concurrency: each request is ``POST /.well-known/est/simpleenroll`` on a fresh TCP + TLS 1.3
   connection authenticated by the device's IDevID (``Connection: close``).

The load generator (benchmarks/_tlsload.py) runs in ``--clients-procs`` processes with
``--concurrency`` connections in flight each; requests completing within the ``--duration``
window after ``--warmup`` are counted. Client and server share this machine's cores.

Usage::

    .venv/bin/python benchmarks/enroll.py [--duration S] [--warmup S] [--workers W]
        [--clients-procs P] [--concurrency C] [--devices N] [--json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import (
    benchmark_parser,
    cell,
    cpu_model,
    drop_workdir,
    emit,
    figures_table,
    progress,
    report_console,
    serve_home,
)

from trustfleet.sim.process import free_port, port_open, stop_group

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
TRUSTFLEET = VENV_BIN / "trustfleet"
HOST = "127.0.0.1"
EST_PATH = "/.well-known/est/simpleenroll"
_READY_TIMEOUT_S = 60.0
_MAX_DEVICES = 5000
_MAX_DURATION_S = 600.0


# -- process and port helpers ----------------------------------------------------------------


class Processes:
    """Child processes, each in its own session; all are stopped by :meth:`stop_all`."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        stop_group(proc, timeout_s=timeout)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            with contextlib.suppress(Exception):
                self.stop(proc)


def group_cpu_seconds(pgids: list[int]) -> float:
    """CPU time (user + system) so far of every live process in the given process groups."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    wanted = set(pgids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in wanted:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / tick


# -- fixtures --------------------------------------------------------------------------------


@dataclass
class Fixture:
    home: Path
    port: int
    devices: list[dict[str, Any]]


def make_home(tmp: Path, *, port: int) -> Path:
    home = tmp / "home"
    subprocess.run(
        [str(TRUSTFLEET), "server", "init", "--home", str(home), "--api-port", str(port)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return home


def register_devices(home: Path, count: int, *, csrs_per_device: int) -> list[dict[str, Any]]:
    """Register ``count`` software-key devices; return their chains, keys and enroll bodies."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from trustfleet.services.factory import sign_csr
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    def csr_for(device_id: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
        return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())

    manufacturing = (home / "public" / "manufacturing-ca.pem").read_text()
    run_id = os.urandom(3).hex()
    rt = Runtime.open(load_server_settings(home))
    devices: list[dict[str, Any]] = []
    try:
        for n in range(count):
            device_id = f"bench-{run_id}-{n:05d}"
            idkey = ec.generate_private_key(ec.SECP256R1())
            dev = sign_csr(
                rt,
                csr_bytes=csr_for(device_id, idkey).public_bytes(serialization.Encoding.PEM),
                model="bench",
                now=datetime.now(UTC),
            )
            bodies = []
            for _ in range(csrs_per_device):
                opkey = ec.generate_private_key(ec.SECP256R1())
                der = csr_for(device_id, opkey).public_bytes(serialization.Encoding.DER)
                bodies.append(base64.b64encode(der).decode())
            devices.append(
                {
                    "id": device_id,
                    "chain_pem": dev.certificate.public_bytes(serialization.Encoding.PEM).decode()
                    + manufacturing,
                    "key_pem": idkey.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                    "bodies": bodies,
                }
            )
    finally:
        rt.close()
    return devices


# -- one load run ----------------------------------------------------------------------------


def run_load(
    procs: Processes,
    tmp: Path,
    *,
    name: str,
    port: int,
    path: str,
    content_type: str,
    devices: list[dict[str, Any]],
    server_ca: Path | None,
    client_procs: int,
    concurrency: int,
    warmup: float,
    duration: float,
    server_pgids: list[int],
) -> dict[str, Any]:
    """Drive ``port`` with ``client_procs`` x ``concurrency`` connections; merge the results."""
    t_start = time.time() + 1.5  # let every client process start and build its contexts
    children = []
    for i in range(client_procs):
        cfg = {
            "host": HOST,
            "port": port,
            "method": "POST",
            "path": path,
            "content_type": content_type,
            "server_ca": str(server_ca) if server_ca else None,
            "devices": devices,
            "concurrency": concurrency,
            "procs": client_procs,
            "proc_index": i,
            "t_start": t_start,
            "warmup": warmup,
            "duration": duration,
        }
        cfg_path = tmp / f"load-{name}-{i}.json"
        cfg_path.write_text(json.dumps(cfg))
        children.append(
            procs.start(
                [sys.executable, str(HERE / "_tlsload.py"), "client", str(cfg_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    time.sleep(max(0.0, t_start + warmup - time.time()))
    cpu0 = group_cpu_seconds(server_pgids)
    time.sleep(max(0.0, t_start + warmup + duration - time.time()))
    server_cpu = group_cpu_seconds(server_pgids) - cpu0
    results = []
    budget = warmup + duration + 60.0
    for child in children:
        out, err = child.communicate(timeout=budget)
        procs.stop(child)
        if child.returncode != 0:
            raise RuntimeError(f"load process failed ({child.returncode}): {err.decode()[-2000:]}")
        results.append(json.loads(out))
    lat = sorted(x for r in results for x in r["latencies_ms"])
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    ok = sum(r["ok"] for r in results)
    client_cpu = sum(r["cpu_s"] for r in results)
    return {
        "ok": ok,
        "errors": sum(r["errors"] for r in results),
        "rate_per_s": ok / duration,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "statuses": statuses,
        "server_cpu_util": server_cpu / duration,
        "client_cpu_util": client_cpu / duration,
        "server_cpu_ms_per_req": 1000 * server_cpu / ok if ok else None,
        "client_cpu_ms_per_req": 1000 * client_cpu / ok if ok else None,
        "error_samples": [s for r in results for s in r["error_samples"]][:10],
    }


def percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def bare_baseline(
    procs: Processes, tmp: Path, fx: Fixture, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    workers = []
    try:
        for _ in range(args.workers):
            w = procs.start(
                [
                    sys.executable,
                    str(HERE / "_tlsload.py"),
                    "serve",
                    "--port",
                    str(port),
                    "--chain",
                    str(fx.home / "tls" / "api-chain.pem"),
                    "--key",
                    str(fx.home / "secrets" / "api-tls.key"),
                    "--client-ca",
                    str(fx.home / "public" / "ca-bundle.pem"),
                ],
                stdout=subprocess.PIPE,
            )
            workers.append(w)
            assert w.stdout is not None
            if w.stdout.readline().strip() != b"ready":
                raise RuntimeError("the bare server did not start")
        return _drive(procs, tmp, fx, args, name="bare", port=port, path="/bare", pgids=workers)
    finally:
        for w in workers:
            procs.stop(w)


def enroll_load(
    procs: Processes, tmp: Path, fx: Fixture, args: argparse.Namespace
) -> dict[str, Any]:
    server = serve_home(
        fx.home,
        ready=lambda: port_open(fx.port, HOST, timeout_s=0.5),
        timeout_s=_READY_TIMEOUT_S,
        args=("--api-port", str(fx.port), "--workers", str(args.workers)),
        log=tmp / "server.log",
    )
    try:
        time.sleep(1.0 + 0.3 * args.workers)  # workers open the store and the CA key lazily
        return _drive(procs, tmp, fx, args, name="enroll", port=fx.port, path=EST_PATH,
                      pgids=[server])  # fmt: skip
    finally:
        server.stop()


def _drive(
    procs: Processes,
    tmp: Path,
    fx: Fixture,
    args: argparse.Namespace,
    *,
    name: str,
    port: int,
    path: str,
    pgids: list[Any],
) -> dict[str, Any]:
    """The load run against ``port``; ``pgids``: the server's processes (group leaders)."""
    return run_load(
        procs,
        tmp,
        name=name,
        port=port,
        path=path,
        content_type="application/pkcs10",
        devices=fx.devices,
        server_ca=None if args.no_server_verify else fx.home / "public" / "root-ca.pem",
        client_procs=args.clients_procs,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=args.duration,
        server_pgids=[p.pid for p in pgids],
    )


# -- output ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    from OpenSSL import SSL

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
    }


def print_rich(doc: dict[str, Any]) -> None:
    p = doc["params"]
    console = report_console(
        "EST enrollment benchmark",
        f"{p['workers']} server worker(s), "
        f"{p['clients_procs']}x{p['concurrency']} client connections, "
        f"{p['warmup']:g} s warm-up + {p['duration']:g} s, {p['devices']} devices; "
        f"{doc['machine']['nproc']} cores ({doc['machine']['cpu']})",
    )
    cols = ("run", "req/s", "p50 ms", "p99 ms", "ok", "errors", "statuses")
    cols += ("server CPU", "client CPU", "srv ms/req", "cli ms/req")
    table = figures_table(cols, left=("run", "statuses"))
    for name, label in (("enroll", "EST simpleenroll"), ("bare", "bare mTLS 1.3 handshake")):
        r = doc.get(name)
        if r is None:
            continue
        table.add_row(
            label,
            f"{r['rate_per_s']:.0f}",
            cell(r["p50_ms"], ".1f"),
            cell(r["p99_ms"], ".1f"),
            str(r["ok"]),
            str(r["errors"]),
            ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items())),
            f"{r['server_cpu_util']:.0%}",
            f"{r['client_cpu_util']:.0%}",
            cell(r["server_cpu_ms_per_req"], ".2f"),
            cell(r["client_cpu_ms_per_req"], ".2f"),
        )
    console.print(table)
    if doc.get("ratio") is not None:
        console.print(f"enrollments/s ÷ bare handshakes/s = [bold]{doc['ratio']:.1%}[/]")
    for name in ("enroll", "bare"):
        for sample in (doc.get(name) or {}).get("error_samples", []):
            console.print(f"[red]{name} error:[/] {sample}", markup=True, highlight=False)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    ap.add_argument(
        "--warmup", type=float, default=2.0, help="seconds before measuring (default 2)"
    )
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    ap.add_argument("--clients-procs", type=int, default=2, help="load processes (default 2)")
    ap.add_argument(
        "--concurrency", type=int, default=4, help="connections per load process (default 4)"
    )
    ap.add_argument(
        "--devices", type=int, default=3000, help="registered devices, one enrollment each (3000)"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the bare-handshake run")
    ap.add_argument(
        "--no-server-verify",
        action="store_true",
        help="clients do not verify the server chain (saves client CPU on a shared machine)",
    )
    args = ap.parse_args(argv)
    if not 0 < args.duration <= _MAX_DURATION_S or not 0 <= args.warmup <= _MAX_DURATION_S:
        ap.error(f"--duration and --warmup must be within (0, {_MAX_DURATION_S:g}] seconds")
    if not 1 <= args.workers <= 64 or not 1 <= args.clients_procs <= 64:
        ap.error("--workers and --clients-procs must be between 1 and 64")
    if not 1 <= args.concurrency <= 1024:
        ap.error("--concurrency must be between 1 and 1024")
    if not 1 <= args.devices <= _MAX_DEVICES:
        ap.error(f"--devices must be between 1 and {_MAX_DEVICES}")
    return args


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-enroll-"))
    log = progress(quiet=args.json)
    try:
        with sigterm_as_interrupt():
            port = free_port()
            log(f"creating a server home in {tmp} …")
            home = make_home(tmp, port=port)
            log(f"registering {args.devices} devices …")
            devices = register_devices(home, args.devices, csrs_per_device=1)
            fx = Fixture(home=home, port=port, devices=devices)
            doc: dict[str, Any] = {
                "benchmark": "enroll",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "params": {
                    "workers": args.workers,
                    "clients_procs": args.clients_procs,
                    "concurrency": args.concurrency,
                    "devices": args.devices,
                    "warmup": args.warmup,
                    "duration": args.duration,
                    "server_verify": not args.no_server_verify,
                },
            }
            if not args.no_baseline:
                log("bare mTLS 1.3 handshakes …")
                doc["bare"] = bare_baseline(procs, tmp, fx, args)
            log("EST enrollments …")
            doc["enroll"] = enroll_load(procs, tmp, fx, args)
            bare = doc.get("bare")
            doc["ratio"] = (
                doc["enroll"]["rate_per_s"] / bare["rate_per_s"]
                if bare and bare["rate_per_s"]
                else None
            )
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=print_rich)
    return 0 if doc["enroll"]["errors"] == 0 and (not bare or bare["errors"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
