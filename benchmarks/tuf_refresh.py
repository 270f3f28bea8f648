"""TUF refresh time of the device's client against a repository of 10,000 targets.

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. ``init_server_home`` makes a server home (TUF keys in SoftHSM2 tokens). ``--targets``
   targets are added with the product's pure ``ota.repository.add_targets``, signed by the
   home's own token keys in one batch: releases of ten models, each listing its manifest,
   image and a delta (``<model>/<version>/{release.json,image.bin,from-<prev>.delta}``).
2. A child process (the "device") runs ``TufClient`` and times, per repetition:
   (a) a cold refresh — trusted root only, then timestamp, snapshot and the large targets;
   (b) a warm refresh after the parent published one more real release
   (``build_release`` + ``publish_release``: new targets, snapshot, timestamp);
   (c) a warm refresh with nothing new; (d) the lookup of one target (median of 200), and
   the scan of every target (``TufClient.targets()``, what the updater does without a
   version). Its peak RSS (``VmHWM``) is read at the end.
3. Transports: plain HTTP from a ``http.server`` thread over the repository folder
   (``HttpFetcher``: TUF processing alone), then the real ``trustfleet server run`` over HTTPS
   with device mTLS (``MtlsFetcher``, the key in the device's token), the device provisioned
   by ``factory provision`` and enrolled by ``agent enroll``.

Usage::

    .venv/bin/python benchmarks/tuf_refresh.py [--targets N] [--reps R] [--no-mtls] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _procs import (
    benchmark_parser,
    cpu_model,
    drop_workdir,
    emit,
    figures_table,
    progress,
    report_console,
    serve_home,
)

from trustfleet.sim.process import ManagedProcess, free_port, stop_group

HERE = Path(__file__).resolve()
TRUSTFLEET = Path(sys.executable).parent / "trustfleet"
HOST = "127.0.0.1"
MODELS = 10
LIVE_MODEL = "bench-live"
LOOKUPS = 200
_READY_TIMEOUT_S = 60.0
_SBOM = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}
_CHILD_TIMEOUT_S = 600.0


# -- the repository (parent) ----------------------------------------------------------------


def synthetic_targets(count: int) -> list[Any]:
    """``count`` targets: releases of ten models, each a manifest, an image and a delta."""
    import hashlib

    from trustfleet.ota.repository import make_target

    targets: list[Any] = []
    n = 0
    while len(targets) < count:
        model, release = f"bench-m{n % MODELS:02d}", n // MODELS
        version, prev = _version(release + 1), _version(release)
        base = {"model": model, "version": version}
        entries = [
            ("release.json", 2048, {"kind": "manifest", **base}),
            ("image.bin", 64 << 20, {"kind": "image", **base}),
            (f"from-{prev}.delta", 3 << 20, {"kind": "delta", **base, "from_version": prev}),
        ]
        for name, length, custom in entries[: count - len(targets)]:
            path = f"{model}/{version}/{name}"
            digest = hashlib.sha256(path.encode()).hexdigest()
            targets.append(make_target(path, length=length, sha256=digest, custom=custom))
        n += 1
    return targets


def _version(release: int) -> str:
    return f"1.{release // 100}.{release % 100}"


def add_bulk(home: Path, count: int) -> dict[str, Any]:
    """Add ``count`` targets in one new targets/snapshot/timestamp version."""
    from trustfleet.services._ota_keys import repo_files
    from trustfleet.services._ota_release import with_targets
    from trustfleet.services._ota_state import write_state
    from trustfleet.settings import load_server_settings

    settings = load_server_settings(home)
    files = repo_files(settings)
    targets = synthetic_targets(count)
    started = time.perf_counter()
    with files.locked():
        new = with_targets(settings, files, targets, now=datetime.now(UTC))
        write_state(settings, files, new, ["targets", "snapshot", "timestamp"])
    return {"seconds": time.perf_counter() - started, "targets": len(new.targets.signed.targets)}


class Publisher:
    """Publishes small real releases of ``LIVE_MODEL`` (build + publish, as the CLI does)."""

    def __init__(self, home: Path, tmp: Path) -> None:
        from trustfleet.services.runtime import Runtime
        from trustfleet.settings import load_server_settings

        self._rt = Runtime.open(load_server_settings(home))
        self._tmp = tmp
        self.count = 0
        self.seconds: list[float] = []

    def publish(self) -> str:
        from trustfleet.services._ota_release import build_release, publish_release

        self.count += 1
        version = f"2.0.{self.count}"
        image = self._tmp / f"live-{version}.bin"
        image.write_bytes(os.urandom(64 * 1024))
        sbom = image.with_suffix(".cdx.json")  # a real image needs its SBOM (issue 17)
        sbom.write_text(json.dumps(_SBOM))
        started = time.perf_counter()
        now = datetime.now(UTC)
        build_release(
            self._rt,
            image=image,
            version=version,
            model=LIVE_MODEL,
            min_version=None,
            now=now,
            sbom=sbom,
        )
        publish_release(self._rt, model=LIVE_MODEL, version=version, now=now)
        self.seconds.append(time.perf_counter() - started)
        return version

    def close(self) -> None:
        self._rt.close()


# -- the device (child process) --------------------------------------------------------------


def client_main(config_path: str) -> int:
    """Child: run commands from stdin (one per line), print one JSON result per command."""
    from trustfleet.agent.updater.fetcher import HttpFetcher
    from trustfleet.agent.updater.tufclient import TufClient, init_trusted_root

    cfg = json.loads(Path(config_path).read_text())
    if cfg["transport"] == "mtls":
        from trustfleet.agent.settings import load_device_settings, ota_urls
        from trustfleet.agent.updater.fetcher import device_fetcher

        settings = load_device_settings(Path(cfg["device"]))
        metadata_url, targets_url = ota_urls(settings)
        fetcher: Any = device_fetcher(settings)
    else:
        metadata_url, targets_url = cfg["metadata_url"], cfg["targets_url"]
        fetcher = HttpFetcher()
    root = Path(cfg["root"]).read_bytes()
    work = Path(cfg["work"])
    client: TufClient | None = None
    print(json.dumps({"ready": True, "rss_before_kib": _status_kib("VmHWM")}), flush=True)
    for n, line in enumerate(sys.stdin):
        op = json.loads(line)
        if op["op"] == "cold":
            metadata = work / f"cold-{n}" / "metadata"
            init_trusted_root(metadata, root)
            client = TufClient(
                metadata_dir=metadata,
                metadata_url=metadata_url,
                targets_url=targets_url,
                download_dir=metadata.parent / "downloads",
                fetcher=fetcher,
            )
        assert client is not None, "the first command is 'cold'"
        result: dict[str, Any] = {"op": op["op"]}
        if op["op"] in ("cold", "warm"):
            started = time.perf_counter()
            client.refresh()
            result["ms"] = 1000 * (time.perf_counter() - started)
        elif op["op"] == "lookup":
            result.update(_lookups(client, op["path"]))
        elif op["op"] == "rss":
            result["rss_kib"] = _status_kib("VmHWM")
        print(json.dumps(result), flush=True)
    return 0


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc (``VmHWM``: its peak RSS).

    Not ``ru_maxrss``: Linux carries that over from the parent across fork and exec, so a
    child of a large parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _lookups(client: Any, path: str) -> dict[str, Any]:
    times = []
    for _ in range(LOOKUPS):
        started = time.perf_counter()
        target = client.target(path)
        times.append(time.perf_counter() - started)
    if target is None:
        raise RuntimeError(f"{path} is not listed")
    started = time.perf_counter()
    listed = len(client.targets())
    scan_ms = 1000 * (time.perf_counter() - started)
    return {"us": 1e6 * statistics.median(times), "scan_ms": scan_ms, "listed": listed}


class Device:
    """The child process, driven line by line."""

    def __init__(self, tmp: Path, cfg: dict[str, Any]) -> None:
        path = tmp / f"client-{cfg['transport']}.json"
        path.write_text(json.dumps(cfg))
        self._err = (tmp / f"client-{cfg['transport']}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "_client", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            start_new_session=True,
        )
        self.first = self._read()

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the device process failed; see {self._err.name}")
        return dict(json.loads(line))

    def close(self) -> None:
        stop_group(self.proc)
        self._err.close()


def measure(device: Device, publisher: Publisher, *, reps: int, lookup: str) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"cold": [], "warm_new": [], "warm_nothing": []}
    lookups: list[float] = []
    scans: list[float] = []
    listed = 0
    for _ in range(reps):
        runs["cold"].append(device.ask("cold")["ms"])
        publisher.publish()
        runs["warm_new"].append(device.ask("warm")["ms"])
        runs["warm_nothing"].append(device.ask("warm")["ms"])
        found = device.ask("lookup", path=lookup)
        lookups.append(found["us"])
        scans.append(found["scan_ms"])
        listed = found["listed"]
    result: dict[str, Any] = {name: summary(values) for name, values in runs.items()}
    result["lookup_us"] = summary(lookups)
    result["scan_all_ms"] = summary(scans)
    result["listed"] = listed
    result["rss_before_mib"] = device.first["rss_before_kib"] / 1024
    result["peak_rss_mib"] = device.ask("rss")["rss_kib"] / 1024
    return result


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {"median": statistics.median(ordered), "p90": p90, "min": ordered[0], "n": len(values)}


# -- transports --------------------------------------------------------------------------------


@contextlib.contextmanager
def http_repo(repo: Path) -> Any:
    """Serve the repository folder over plain HTTP/1.1 from a thread."""

    class Quiet(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((HOST, 0), functools.partial(Quiet, directory=str(repo)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start_server(home: Path, tmp: Path, *, port: int, mqtt_port: int) -> ManagedProcess:
    return serve_home(
        home,
        ready=lambda: _healthy(home, port),
        timeout_s=_READY_TIMEOUT_S,
        args=("--api-port", str(port), "--mqtt-port", str(mqtt_port)),
        log=tmp / "server.log",
    )


def _healthy(home: Path, port: int) -> bool:
    ctx = ssl.create_default_context(cafile=str(home / "public" / "ca-bundle.pem"))
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        with (
            socket.create_connection((HOST, port), timeout=2) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(request)
            return tls.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def enrolled_device(home: Path, tmp: Path) -> Path:
    """One device provisioned by the factory (key in its own token) and enrolled over EST."""

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [str(TRUSTFLEET), *args, "--json"], capture_output=True, timeout=180, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"trustfleet {args[0]} {args[1]} failed: {done.stderr[-2000:]!r}")
        return json.loads(done.stdout)

    made = cli(
        "factory",
        "provision",
        "--home",
        str(home),
        "--out",
        str(tmp / "devices"),
        "--model",
        LIVE_MODEL,
    )
    directory = Path(made["devices"][0]["directory"])
    cli("agent", "enroll", "--device", str(directory))
    return directory


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, log: Any) -> dict[str, Any]:
    from trustfleet.services.home import HomeOptions, init_server_home

    port, mqtt_port = free_port(), free_port()
    home = tmp / "home"
    log(f"creating a server home in {tmp} …")
    init_server_home(
        home,
        options=HomeOptions(api_port=port, mqtt_port=mqtt_port, pins_out=tmp / "pins"),
        now=datetime.now(UTC),
    )
    log(f"adding {args.targets} targets …")
    bulk = add_bulk(home, args.targets)
    repo = home / "ota" / "repo"
    publisher = Publisher(home, tmp)
    lookup = synthetic_targets(args.targets)[args.targets // 2].path
    doc: dict[str, Any] = {"bulk_add_s": bulk["seconds"], "lookup_path": lookup}
    devices: list[Device] = []
    server = None
    try:
        with http_repo(repo) as url:
            log("device over plain HTTP (HttpFetcher) …")
            cfg = {
                "transport": "http",
                "metadata_url": f"{url}/metadata/",
                "targets_url": f"{url}/targets/",
                "root": str(home / "public" / "tuf-root.json"),
                "work": str(tmp / "device-http"),
            }
            devices.append(Device(tmp, cfg))
            doc["http"] = measure(devices[-1], publisher, reps=args.reps, lookup=lookup)
        if not args.no_mtls:
            log("starting trustfleet server run; provisioning and enrolling one device …")
            server = start_server(home, tmp, port=port, mqtt_port=mqtt_port)
            device_dir = enrolled_device(home, tmp)
            log("device over HTTPS with mTLS (MtlsFetcher, key in its token) …")
            cfg = {
                "transport": "mtls",
                "device": str(device_dir),
                "root": str(device_dir / "tuf" / "metadata" / "root.json"),
                "work": str(tmp / "device-mtls"),
            }
            devices.append(Device(tmp, cfg))
            doc["mtls"] = measure(devices[-1], publisher, reps=args.reps, lookup=lookup)
    finally:
        for device in devices:
            device.close()
        if server is not None:
            server.stop()
        publisher.close()
    newest = max(repo.glob("metadata/*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
    doc["targets_metadata_bytes"] = newest.stat().st_size
    doc["targets_listed"] = len(json.loads(newest.read_bytes())["signed"]["targets"])
    doc["publish_s"] = summary(publisher.seconds)
    return doc


def print_table(doc: dict[str, Any]) -> None:
    p = doc["params"]
    console = report_console(
        "TUF refresh benchmark",
        f"{doc['targets_listed']} targets, targets metadata "
        f"{doc['targets_metadata_bytes']:,} bytes, {p['reps']} repetitions; "
        f"{doc['machine']['nproc']} cores ({doc['machine']['cpu']})",
    )
    table = figures_table(("transport", "step", "median", "p90", "min"), left=("transport", "step"))
    steps = (
        ("cold", "(a) cold refresh", "ms"),
        ("warm_new", "(b) warm, one new release", "ms"),
        ("warm_nothing", "(c) warm, nothing new", "ms"),
        ("lookup_us", "(d) one lookup", "µs"),
        ("scan_all_ms", "    list all targets", "ms"),
    )
    for transport in ("http", "mtls"):
        r = doc.get(transport)
        if r is None:
            continue
        for key, label, unit in steps:
            s = r[key]
            table.add_row(
                transport, label, *(f"{s[k]:.1f} {unit}" for k in ("median", "p90", "min"))
            )
        table.add_row(
            transport,
            "peak RSS of the device process",
            f"{r['peak_rss_mib']:.0f} MiB",
            "",
            f"(start {r['rss_before_mib']:.0f} MiB)",
        )
    console.print(table)
    console.print(
        f"server side: adding {p['targets']} targets in one batch {doc['bulk_add_s']:.2f} s; "
        f"publishing one release (build + publish) median {doc['publish_s']['median']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return client_main(argv[1])
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--targets", type=int, default=10_000, help="targets listed (default 10000)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per step (default 5)")
    ap.add_argument("--no-mtls", action="store_true", help="skip the HTTPS server run")
    args = ap.parse_args(argv)
    if not 1 <= args.targets <= 200_000 or not 1 <= args.reps <= 50:
        ap.error("--targets must be 1..200000 and --reps 1..50")
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-tuf-"))
    log = progress(quiet=args.json)
    try:
        doc = {
            "benchmark": "tuf_refresh",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"nproc": os.cpu_count(), "cpu": cpu_model()},
            "params": {"targets": args.targets, "reps": args.reps},
        }
        doc.update(run(args, tmp, log))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
