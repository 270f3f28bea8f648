"""Fleet scale: simulated devices holding mutual TLS 1.3 MQTT connections to a real broker,
side by side on a bare broker and on the broker as TrustFleet runs it (``--broker mosquitto``
or ``--broker rabbitmq``), with TrustFleet's figures as ratios of the bare ones.

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. ``trustfleet server init`` makes a home (CA keys in SoftHSM2). One software P-256 key is
   shared by every simulated device (the issue allows software keys); each device gets its own
   LDevID (``pki.issue_device_certificate``, profile LDEVID, CN = ``fleet-NNNNNN``) from the
   device CA, and the fleet service ``svc.ingest`` a service certificate (software key). An
   empty device-CA CRL is signed. Issuing is setup and timed separately.
2. For each mode (``--modes``, default both, bare first), a broker:

   * Mosquitto ``bare``: a stock ``mosquitto.conf`` with the same listener, certificate files
     and queue limits, requiring a client certificate from the device CA, and nothing else (no
     guard plugin, ACL, dynamic security, CRL or identity-as-username). ``trustfleet``:
     :class:`trustfleet.broker.Broker` for that home (guard plugin, ACL, CRL, supervisor).
   * RabbitMQ (a ``--nodes`` cluster from tests/support/rabbitmq.py, devices spread over the
     nodes): ``bare``: client certificates verified, no CRL check, MQTT clients logged in
     anonymously as one user without topic permissions. ``trustfleet``: CRL checks over the
     hashed CRL folder, and :class:`trustfleet.broker.rabbitmq.RabbitBroker` attached as
     ``server run`` does: session policy, trust folder, one certificate-login user per device
     with its topic rules (made through the management API: timed as setup).

3. The fleet service: on Mosquitto a process (benchmarks/_mqttload.py, MQTT 5) subscribed to
   ``$share/ingest/tf/v1/d/+/telemetry`` at QoS 1; on RabbitMQ benchmarks/_amqpload.py
   consuming a queue bound for ``tf/v1/d/+/telemetry`` (``trustfleet``: the service's own
   quorum-queue consumer, ``tf.ingest``; ``bare``: a classic queue). ``--procs`` device
   processes hold the devices (MQTT 3.1.1 by default), at most ``--concurrency`` handshakes in
   flight each. The service stops at the consumer: writing to the store is
   benchmarks/ingest_path.py's figure.

Phases: **storm** (connect every device as fast as the generator can: connects/s), **hold**
(everything connected: broker RSS and fds → memory per connection), **telemetry** (the first
``--publishers`` devices publish QoS 1 telemetry at ``--rate`` msg/s in total for
``--duration`` s: msg/s delivered to the service, lost = acked by the broker - received by the
service, p50/p99 latency from the payload's ``ts``), **restart** (Mosquitto as TrustFleet runs
it only: SIGKILL Mosquitto; the Broker's supervisor restarts it; devices reconnect with backoff
+ full jitter: time until all are back; a RabbitMQ node's death is tests/integration/scaleout's).

Usage::

    .venv/bin/python benchmarks/fleet.py [--broker mosquitto|rabbitmq] [--nodes N]
        [--modes both|bare|trustfleet] [--devices N] [--procs P] [--concurrency C]
        [--rate R] [--duration S] [--publishers M] [--no-restart] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _procs import (
    benchmark_parser,
    cpu_model,
    drop_workdir,
    emit,
    figures_table,
    interrupts_and_deadline,
    params,
    progress,
    raise_nofile,
    report_console,
)

from trustfleet.errors import Unavailable
from trustfleet.sim.process import free_port, port_open, stop_group, wait_until

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
TRUSTFLEET = VENV_BIN / "trustfleet"
HOST = "127.0.0.1"
SERVICE_CN = "svc.ingest"
TELEMETRY_FILTER = "tf/v1/d/+/telemetry"
SHARED_TOPIC = f"$share/ingest/{TELEMETRY_FILTER}"
MODES = {"both": ("bare", "trustfleet"), "bare": ("bare",), "trustfleet": ("trustfleet",)}
_MAX_DEVICES = 50_000
_MAX_PROCS = 16
_MAX_DURATION_S = 300.0
_CMD_TIMEOUT_S = 60.0


# -- processes -------------------------------------------------------------------------------


class Child:
    """A load process driven by JSON lines on its stdin/stdout, in its own session."""

    def __init__(self, argv: list[str], *, stderr: Path) -> None:
        with stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self.stderr = stderr
        self._buf = b""

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load process {self.proc.pid} did not answer in {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    tail = self.stderr.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"load process {self.proc.pid} exited: {tail}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def ask(self, obj: dict[str, Any], timeout: float = _CMD_TIMEOUT_S) -> dict[str, Any]:
        self.send(obj)
        return self.recv(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc.poll() is None:
            stop_group(proc, timeout_s=timeout)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close() if stream is not None else None


def ask_all(children: list[Child], obj: Any, timeout: float) -> list[dict[str, Any]]:
    """Send one command to every child (``obj`` may be a list, one per child); gather answers."""
    for i, child in enumerate(children):
        child.send(obj[i] if isinstance(obj, list) else obj)
    deadline = time.monotonic() + timeout
    return [c.recv(max(0.1, deadline - time.monotonic())) for c in children]


def proc_status(pid: int | None) -> dict[str, Any]:
    """RSS (KiB), open fds and CPU seconds of a process (zeros if it is gone)."""
    out = {"rss_kib": 0, "fds": 0, "cpu_s": 0.0}
    if pid is None:
        return out
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def proc_limits(pid: int | None) -> str | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return " ".join(line.split()[3:5])
    return None


def sockstat() -> dict[str, int]:
    """Kernel TCP sockets in use and their memory (pages), from /proc/net/sockstat."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                out = {k: int(v) for k, v in zip(parts[::2], parts[1::2], strict=False)}
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def machine_util(before: tuple[float, float]) -> float:
    """Share of all cores busy since ``before`` (any process: ours, the kernel, others)."""
    busy, total = machine_busy()
    return round((busy - before[0]) / max(1.0, total - before[1]), 3)


def cpu_of(pids: list[int | None]) -> float:
    return sum(proc_status(p)["cpu_s"] for p in pids)


# -- setup -----------------------------------------------------------------------------------


def make_home(tmp: Path) -> Path:
    home = tmp / "home"
    subprocess.run(
        [str(TRUSTFLEET), "server", "init", "--home", str(home), "--api-port", str(free_port())],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return home


def issue_certificates(
    home: Path, work: Path, *, devices: int, procs: int
) -> tuple[list[Path], Path, Path, bytes, float]:
    """Device certificates (one file per load process), the service identity and the CRL.

    Returns (cert files, shared key, service cert files, CRL DER, seconds spent issuing).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from trustfleet.pki import LDEVID, build_crl, issue_device_certificate
    from trustfleet.pki.issue import issue_service_certificate
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    key = ec.generate_private_key(ec.SECP256R1())
    key_path = work / "shared-device.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    pem = serialization.Encoding.PEM
    rt = Runtime.open(load_server_settings(home))
    t0 = time.perf_counter()
    try:
        issuer = rt.issuer("device")
        org = rt.settings.pki.organization
        now = datetime.now(UTC)
        per_proc: list[list[tuple[str, str]]] = [[] for _ in range(procs)]
        for n in range(devices):
            device_id = f"fleet-{n:06d}"
            cert = issue_device_certificate(
                issuer=issuer,
                public_key=key.public_key(),
                device_id=device_id,
                profile=LDEVID,
                organization=org,
                now=now,
            )
            per_proc[n % procs].append((device_id, cert.public_bytes(pem).decode()))
        service = issue_service_certificate(
            issuer=issuer, public_key=key.public_key(), identity=SERVICE_CN, organization=org,
            now=now,
        )  # fmt: skip
        crl = build_crl(
            issuer=issuer, revoked=[], crl_number=1, now=now, next_update=now + timedelta(days=1)
        )
        crl_der = crl.public_bytes(serialization.Encoding.DER)
    finally:
        rt.close()
    seconds = time.perf_counter() - t0
    files = []
    for i, certs in enumerate(per_proc):
        path = work / f"devices-{i}.json"
        path.write_text(json.dumps(certs))
        files.append(path)
    service_file = work / "service.json"
    service_file.write_text(json.dumps([[SERVICE_CN, service.public_bytes(pem).decode()]]))
    return files, key_path, service_file, crl_der, seconds


# -- the brokers under test ------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """One broker as the load sees it, in one mode (``bare`` or ``trustfleet``).

    Attributes:
        broker: ``mosquitto`` or ``rabbitmq``.
        mode: ``bare`` (stock broker, mutual TLS 1.3 only) or ``trustfleet`` (as the service
            configures and drives it).
        ports: The MQTT TLS port of each node; device process i uses ``ports[i % len]``.
        pids: The broker's processes now (every node's VM and helpers).
        service: How the fleet service consumes: ``{"kind": "mqtt", "subscribe": F}`` or
            ``{"kind": "amqp", ...}`` (benchmarks/_amqpload.py's config).
        supervised: The supervised Mosquitto (restart phase), else None.
        setup: Figures of bringing it up (seconds, users made).
    """

    broker: str
    mode: str
    ports: list[int]
    pids: Callable[[], list[int]]
    service: dict[str, Any]
    supervised: Any = None
    setup: dict[str, Any] = dataclasses.field(default_factory=dict)


def group_pids(pgid: int | None) -> list[int]:
    """Every process of process group ``pgid`` (from /proc)."""
    if pgid is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                    out.append(int(entry))
    return out


@contextlib.contextmanager
def mosquitto_target(
    args: argparse.Namespace, mode: str, home: Path, work: Path, crl_der: bytes
) -> Iterator[Target]:
    from trustfleet.broker import Broker, BrokerConfig

    config = BrokerConfig.for_home(home, port=free_port(), service_identities=[SERVICE_CN])
    # The guard's per-device rate (ADR 0008) must not be what this load test measures.
    per_device = args.rate / (args.publishers or args.devices)
    if per_device * 2 > config.device_rate_per_s:
        config = dataclasses.replace(
            config, device_rate_per_s=min(1e5, per_device * 2), device_burst=1_000_000
        )
    service = {"kind": "mqtt", "subscribe": SHARED_TOPIC}
    if mode == "trustfleet":
        broker = Broker(config)
        broker.start(crl_der=crl_der)
        conf = config.paths.conf.read_text()
        target = Target(
            "mosquitto", mode, [config.port], lambda: [p for p in [broker.pid] if p], service,
            supervised=broker,
            setup={"max_connections": next(
                (ln for ln in conf.splitlines() if ln.startswith("max_connections")),
                "(not set: -1)",
            )},
        )  # fmt: skip
        try:
            yield target
        finally:
            target.setup["broker_log_drops"] = _count_in_log(config.paths.log, b"dropped")
            broker.stop()
        return
    # A stock Mosquitto: the same listener, files and queue limits, none of TrustFleet's
    # guard plugin, ACL, dynamic security, CRL or identity-as-username.
    # Its own folder outside the (0700) work folder: Mosquitto reads it as run_as.
    folder = Path(tempfile.mkdtemp(prefix="tf-bench-bare-mosquitto-"))
    p = config.paths
    shutil.copyfile(p.tls_cert, folder / "chain.pem")
    shutil.copyfile(p.tls_key, folder / "key.pem")
    (folder / "ca.pem").write_bytes(p.device_ca.read_bytes() + p.root_ca.read_bytes())
    (folder / "key.pem").chmod(0o600)
    if os.geteuid() == 0:  # Mosquitto drops to run_as: it must read its files
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, config.run_as)
    (folder / "mosquitto.conf").write_text(
        "\n".join([
            "per_listener_settings false", "allow_anonymous true", "persistence false",
            f"user {config.run_as}", "log_dest stderr", "log_type error", "log_type warning",
            f"max_packet_size {config.packet_limit_bytes}",
            f"max_inflight_messages {config.device_max_inflight}",
            f"max_queued_messages {config.max_queued_messages}",
            f"listener {config.port} {HOST}", f"certfile {folder / 'chain.pem'}",
            f"keyfile {folder / 'key.pem'}", f"cafile {folder / 'ca.pem'}",
            "tls_version tlsv1.3", "require_certificate true", "",
        ])
    )  # fmt: skip
    with (folder / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(folder / "mosquitto.conf")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                tail = (folder / "mosquitto.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"the bare mosquitto exited: {tail}")
            return port_open(config.port)

        wait_until(listening, timeout_s=30, what="the bare mosquitto")
        yield Target("mosquitto", mode, [config.port], lambda: group_pids(proc.pid), service)
    finally:
        stop_group(proc, timeout_s=10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def rabbitmq_target(
    args: argparse.Namespace,
    mode: str,
    home: Path,
    work: Path,
    *,
    crl_der: bytes,
    device_ids: list[str],
    log: Any,
) -> Iterator[Target]:
    from support.rabbitmq import rabbitmq_cluster
    from trustfleet.broker import BrokerConfig
    from trustfleet.broker._trust import BrokerCa, load_ca
    from trustfleet.broker.rabbitmq import RabbitBroker, RabbitConfig
    from trustfleet.broker.rabbitmq._mgmt import ManagementEndpoint

    p = BrokerConfig.for_home(home, port=free_port()).paths
    root = work / f"rabbit-{mode}"
    trust = root / "trust"
    (trust / "crl").mkdir(parents=True)
    ca_bundle = root / "ca.pem"
    ca_bundle.write_bytes(p.device_ca.read_bytes() + p.root_ca.read_bytes())
    log(f"starting a {args.nodes}-node RabbitMQ cluster ({mode}) …")
    t0 = time.perf_counter()
    with rabbitmq_cluster(
        root, nodes=args.nodes, server_cert=p.tls_cert, server_key=p.tls_key,
        ca_bundle=ca_bundle, crl_dir=trust / "crl", bare=mode == "bare",
    ) as cluster:  # fmt: skip
        setup: dict[str, Any] = {"cluster_start_s": round(time.perf_counter() - t0, 1)}
        amqp = {
            "kind": "amqp",
            "mode": mode,
            "urls": [f"amqp://{HOST}:{n.amqp_port}" for n in cluster.nodes],
            "username": cluster.admin_user,
            "password": cluster.admin_password,
            "queue": "tf.ingest" if mode == "trustfleet" else "bench.telemetry",
            "filters": [TELEMETRY_FILTER],
            "prefetch": args.prefetch,
        }
        if mode == "trustfleet":
            # What `server run` does on attach: the session policy, the trust folder (CA
            # bundle and hashed CRL folder), then one certificate-login user per device.
            broker = RabbitBroker(
                RabbitConfig(
                    endpoint=ManagementEndpoint(
                        urls=[f"http://{HOST}:{n.mgmt_port}" for n in cluster.nodes],
                        username=cluster.admin_user, password=cluster.admin_password,
                        timeout_s=30.0,
                    ),
                    vhost="/", trust_dirs=[trust], root_ca=p.root_ca,
                )
            )  # fmt: skip
            broker.start(trust=[BrokerCa(cert=load_ca(p.device_ca), crl_der=crl_der)])
            log(f"making {len(device_ids)} device users through the management API …")
            t1 = time.perf_counter()
            report = broker.sync_devices(device_ids)
            users_s = time.perf_counter() - t1
            setup |= {
                "users_made": len(report.added),
                "users_s": round(users_s, 2),
                "users_per_s": round(len(report.added) / max(1e-9, users_s), 1),
            }
        yield Target(
            "rabbitmq", mode, [n.mqtt_tls_port for n in cluster.nodes],
            lambda: [pid for n in cluster.nodes for pid in group_pids(cluster.process_group(n))],
            amqp, setup=setup,
        )  # fmt: skip


# -- the run ---------------------------------------------------------------------------------


def _load_config(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    return {
        "host": HOST,
        "keepalive_s": args.keepalive,
        "concurrency": args.concurrency,
        "connect_timeout_s": args.phase_timeout,
        "connect_attempt_timeout_s": 15.0,
        "backoff_base_s": args.backoff_base,
        "backoff_max_s": args.backoff_max,
        "max_inflight": 10,
        "drain_timeout_s": 30.0,
        **kw,
    }


def run(args: argparse.Namespace, tmp: Path, children: list[Child], log: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "benchmark": "fleet",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(args.broker),
        "params": params(
            args,
            "broker",
            "modes",
            "nodes",
            "devices",
            "procs",
            "concurrency",
            "rate",
            "duration",
            "publishers",
            "hold",
            "keepalive",
            "service_conns",
            "device_protocol",
            "server_verify",
        ),
    }
    nofile = raise_nofile(args.devices * 2 + 4096)
    doc["nofile_soft_limit"] = nofile
    if nofile < args.devices + 256:
        log(f"warning: RLIMIT_NOFILE is only {nofile}; the broker will run out of fds")

    log(f"creating a server home in {tmp} …")
    t0 = time.perf_counter()
    home = make_home(tmp)
    doc["setup_home_s"] = round(time.perf_counter() - t0, 2)
    work = tmp / "work"
    work.mkdir()
    log(f"issuing {args.devices} device certificates …")
    files, key, service_file, crl_der, issue_s = issue_certificates(
        home, work, devices=args.devices, procs=args.procs
    )
    doc["setup_issue_s"] = round(issue_s, 2)
    doc["setup_issue_ms_per_cert"] = round(1000 * issue_s / args.devices, 3)
    device_ids = [f"fleet-{n:06d}" for n in range(args.devices)]

    doc["runs"] = {}
    for mode in MODES[args.modes]:
        log(f"── {args.broker}, {mode} ──")
        if args.broker == "mosquitto":
            target_cm = mosquitto_target(args, mode, home, work, crl_der)
        else:
            target_cm = rabbitmq_target(
                args, mode, home, work, crl_der=crl_der, device_ids=device_ids, log=log
            )
        mode_children: list[Child] = []
        with target_cm as target:
            try:
                doc["runs"][mode] = _phases(
                    args, target, files=files, key=key, service_file=service_file, home=home,
                    work=work / mode, children=mode_children, log=log,
                )  # fmt: skip
            finally:
                children.extend(mode_children)
                for child in mode_children:
                    with contextlib.suppress(Exception):
                        child.stop()
    if len(doc["runs"]) == 2:
        doc["ratio"] = ratios(doc["runs"]["trustfleet"], doc["runs"]["bare"])
    return doc


RATIO_FIGURES = (
    ("storm", "connects_per_s"),
    ("storm", "connect_p99_ms"),
    ("hold", "broker_kib_per_conn"),
    ("telemetry", "delivered_per_s"),
    ("telemetry", "p50_ms"),
    ("telemetry", "p99_ms"),
)


def ratios(tf: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    """TrustFleet's figure over the bare broker's, for each figure of :data:`RATIO_FIGURES`."""
    out: dict[str, float | None] = {}
    for phase, name in RATIO_FIGURES:
        a = (tf.get(phase) or {}).get(name)
        b = (bare.get(phase) or {}).get(name)
        out[f"{phase}.{name}"] = round(a / b, 3) if a is not None and b else None
    return out


def _service_children(
    args: argparse.Namespace,
    target: Target,
    common: dict[str, Any],
    *,
    service_file: Path,
    work: Path,
) -> list[Child]:
    out = []
    for i in range(args.service_conns):
        cfg = work / f"service-cfg-{i}.json"
        if target.service["kind"] == "amqp":
            cfg.write_text(json.dumps({**target.service, "connect_timeout_s": args.phase_timeout}))
            argv = [sys.executable, str(HERE / "_amqpload.py"), str(cfg)]
        else:
            cfg.write_text(
                json.dumps(
                    _load_config(
                        args, **common, port=target.ports[0], v5=True,
                        certs=str(service_file),
                        subscribe=target.service["subscribe"],
                        receive_maximum=args.receive_maximum, nofile=1024,
                        source_ip="127.0.0.2",
                    )
                )
            )  # fmt: skip
            argv = [sys.executable, str(HERE / "_mqttload.py"), "service", str(cfg)]
        out.append(Child(argv, stderr=work / f"service-{i}.err"))
    return out


def _phases(
    args: argparse.Namespace,
    target: Target,
    *,
    files: list[Path],
    key: Path,
    service_file: Path,
    home: Path,
    work: Path,
    children: list[Child],
    log: Any,
) -> dict[str, Any]:
    work.mkdir()
    doc: dict[str, Any] = {"setup": target.setup}
    pids = target.pids()
    doc["broker_processes"] = len(pids)
    doc["broker_nofile_limit"] = proc_limits(pids[0] if pids else None)
    server_ca = str(home / "public" / "root-ca.pem") if args.server_verify else None
    common = {"key": str(key), "server_ca": server_ca}
    nofile = args.devices + 4096

    svc_children = _service_children(args, target, common, service_file=service_file, work=work)
    children.extend(svc_children)
    dev_children = []
    for i, path in enumerate(files):
        cfg = work / f"devices-cfg-{i}.json"
        cfg.write_text(
            json.dumps(
                _load_config(
                    args,
                    **common,
                    port=target.ports[i % len(target.ports)],
                    v5=args.device_protocol == "5",
                    certs=str(path),
                    nofile=nofile,
                    source_ip=f"127.0.{1 + i // 250}.{3 + i % 250}",
                )
            )
        )
        c = Child(
            [sys.executable, str(HERE / "_mqttload.py"), "devices", str(cfg)],
            stderr=work / f"devices-{i}.err",
        )
        children.append(c)
        dev_children.append(c)
    for c in children:
        c.recv(_CMD_TIMEOUT_S)
    dev_pids = [c.proc.pid for c in dev_children]

    svc = ask_all(svc_children, {"cmd": "connect"}, args.phase_timeout + 10)
    if any(s["connected"] != 1 for s in svc):
        raise RuntimeError(f"the service did not connect: {svc}")
    time.sleep(0.5)
    idle = group_status(target.pids())
    load_idle_kib = sum(s["rss_kib"] for s in ask_all(dev_children, {"cmd": "status"}, 60))
    doc["broker_idle"] = idle
    sock0 = sockstat()

    # 1. storm
    log(f"storm: connecting {args.devices} devices …")
    cpu0 = (cpu_of(target.pids()), cpu_of(dev_pids), time.monotonic())
    mach0 = machine_busy()
    storm = ask_all(dev_children, {"cmd": "connect"}, args.phase_timeout + 30)
    cpu1 = (cpu_of(target.pids()), cpu_of(dev_pids), time.monotonic())
    held = sum(s["connected"] for s in storm)
    t_first = min(s["t_start"] for s in storm)
    t_last = max(s["last_connack"] or t_first for s in storm)
    wall = max(1e-9, t_last - t_first)
    doc["storm"] = {
        "held": held,
        "wall_s": round(wall, 2),
        "connects_per_s": round(held / wall, 1),
        "connect_p50_ms": max(s["p50_ms"] or 0 for s in storm),
        "connect_p99_ms": max(s["p99_ms"] or 0 for s in storm),
        "failed_attempts": sum(s["failures"] for s in storm),
        "broker_cpu_util": round((cpu1[0] - cpu0[0]) / (cpu1[2] - cpu0[2]), 3),
        "load_cpu_util": round((cpu1[1] - cpu0[1]) / (cpu1[2] - cpu0[2]), 3),
        "machine_cpu_util": machine_util(mach0),
        "broker_cpu_ms_per_connect": round(1000 * (cpu1[0] - cpu0[0]) / max(1, held), 3),
        "load_cpu_ms_per_connect": round(1000 * (cpu1[1] - cpu0[1]) / max(1, held), 3),
        "error_samples": [e for s in storm for e in s["error_samples"]][:5],
    }
    log(f"  held {held} at {doc['storm']['connects_per_s']} connects/s")

    # 2. hold
    time.sleep(args.hold)
    hold_cpu0 = (cpu_of(target.pids()), time.monotonic())
    time.sleep(2.0)
    status = ask_all(dev_children, {"cmd": "status"}, _CMD_TIMEOUT_S)
    bstat = group_status(target.pids())
    sock1 = sockstat()
    held_now = sum(s["connected"] for s in status)
    n = max(1, held_now)
    doc["hold"] = {
        "held": held_now,
        "broker_rss_mib": round(bstat["rss_kib"] / 1024, 1),
        "broker_fds": bstat["fds"],
        "broker_kib_per_conn": round((bstat["rss_kib"] - idle["rss_kib"]) / n, 2),
        "load_rss_mib": round(sum(s["rss_kib"] for s in status) / 1024, 1),
        "load_kib_per_conn": round((sum(s["rss_kib"] for s in status) - load_idle_kib) / n, 2),
        "kernel_tcp_sockets": sock1.get("inuse", 0),
        "kernel_tcp_mem_mib": round(sock1.get("mem", 0) * 4096 / 2**20, 1),
        "kernel_tcp_kib_per_conn": round((sock1.get("mem", 0) - sock0.get("mem", 0)) * 4 / n, 2),
        "broker_idle_cpu_util": round(
            (cpu_of(target.pids()) - hold_cpu0[0]) / (time.monotonic() - hold_cpu0[1]), 3
        ),
    }
    log(f"  broker RSS {doc['hold']['broker_rss_mib']} MiB, {bstat['fds']} fds")

    # 3. telemetry
    if args.duration > 0:
        doc["telemetry"] = _telemetry(
            args, target, dev_children, svc_children, dev_pids=dev_pids, log=log
        )

    # 4. restart (TrustFleet's supervisor: Mosquitto only; RabbitMQ's node loss is tested in
    # tests/integration/scaleout)
    if not args.no_restart and target.supervised is not None:
        doc["restart"] = _restart(args, target.supervised, dev_children, svc_children, log)

    final = ask_all(children, {"cmd": "quit"}, _CMD_TIMEOUT_S)
    doc["errors_total"] = sum(s["errors"] for s in final)
    doc["error_samples"] = [e for s in final for e in s["error_samples"]][:10]
    return doc


def group_status(pids: list[int]) -> dict[str, Any]:
    """:func:`proc_status` summed over ``pids``."""
    out: dict[str, Any] = {"rss_kib": 0, "fds": 0, "cpu_s": 0.0}
    for pid in pids:
        one = proc_status(pid)
        for k in out:
            out[k] += one[k]
    return out


def _telemetry(
    args: argparse.Namespace,
    target: Target,
    dev_children: list[Child],
    svc_children: list[Child],
    *,
    dev_pids: list[int],
    log: Any,
) -> dict[str, Any]:
    publishers = min(args.publishers or args.devices, args.devices)
    log(f"telemetry: {publishers} devices at {args.rate:g} msg/s for {args.duration:g} s …")
    ask_all(svc_children, {"cmd": "reset"}, _CMD_TIMEOUT_S)
    procs = len(dev_children)
    cmds = [
        {
            "cmd": "publish",
            "rate": args.rate / procs,
            "duration": args.duration,
            "devices": publishers // procs + (1 if i < publishers % procs else 0),
        }
        for i in range(procs)
    ]
    svc_pids = [c.proc.pid for c in svc_children]
    c0 = (cpu_of(target.pids()), cpu_of(dev_pids), cpu_of(svc_pids), time.monotonic())
    mach0 = machine_busy()
    t_start = time.time()
    pubs = ask_all(dev_children, cmds, args.duration + 60)
    c1 = (cpu_of(target.pids()), cpu_of(dev_pids), cpu_of(svc_pids), time.monotonic())
    mach = machine_util(mach0)
    acked = sum(p["acked"] for p in pubs)
    stats: list[dict[str, Any]] = []

    def delivered() -> bool:
        stats[:] = ask_all(svc_children, {"cmd": "stats"}, _CMD_TIMEOUT_S)
        return sum(s["unique"] for s in stats) >= acked

    with contextlib.suppress(Unavailable):  # delivery to the service may trail the PUBACKs
        wait_until(delivered, timeout_s=60.0, what="delivery to the service", poll_s=0.2)
    unique = sum(s["unique"] for s in stats)
    # Delivered per second over the send window, or until the last message arrived if the
    # service fell behind (an overloaded broker delivers long after the devices stopped).
    t_last = max(s["t_last_new"] for s in stats)
    window = max(*(p["send_window_s"] for p in pubs), t_last - t_start)
    # The broker's and the service's CPU over the whole delivery, the devices' while sending.
    c2 = (cpu_of(target.pids()), cpu_of(svc_pids), time.monotonic())
    elapsed = c1[3] - c0[3]
    lat50 = max((s["p50_ms"] or 0) for s in stats)
    lat99 = max((s["p99_ms"] or 0) for s in stats)
    out = {
        "publishers": publishers,
        "target_rate": args.rate,
        "sent": sum(p["sent"] for p in pubs),
        "acked": acked,
        "unacked": sum(p["unacked"] for p in pubs),
        "skipped_backpressure": sum(p["skipped"] for p in pubs),
        "received": sum(s["received"] for s in stats),
        "received_unique": unique,
        "duplicates": sum(s["dups"] for s in stats),
        "lost": acked - unique,
        "delivered_per_s": round(unique / window, 1),
        "delivery_window_s": round(window, 2),
        "p50_ms": lat50,
        "p99_ms": lat99,
        "max_ms": max((s["max_ms"] or 0) for s in stats),
        "drain_s": round(max(p["drain_s"] for p in pubs), 2),
        "broker_cpu_util": round((c2[0] - c0[0]) / (c2[2] - c0[3]), 3),
        "devices_cpu_util": round((c1[1] - c0[1]) / elapsed, 3),
        "service_cpu_util": round((c2[1] - c0[2]) / (c2[2] - c0[3]), 3),
        "machine_cpu_util": mach,
        "suback_codes": sorted({c for s in stats for c in s["suback_codes"]}),
    }
    log(f"  delivered {out['delivered_per_s']} msg/s, lost {out['lost']}, p99 {lat99} ms")
    return out


def _restart(
    args: argparse.Namespace,
    broker: Any,
    dev_children: list[Child],
    svc_children: list[Child],
    log: Any,
) -> dict[str, Any]:
    log("restart: SIGKILL to mosquitto; the supervisor restarts it …")
    old = broker.pid
    restarts0 = broker.restarts
    t_kill = time.time()
    os.kill(old, signal.SIGKILL)
    with contextlib.suppress(Unavailable):
        wait_until(
            lambda: broker.restarts != restarts0 and broker.pid is not None,
            timeout_s=60,
            what="the restarted mosquitto",
            poll_s=0.02,
        )
    t_listen = time.time()
    if broker.pid is None:
        raise RuntimeError(f"the supervisor did not restart mosquitto: {broker.failure}")
    cpu0 = (cpu_of([broker.pid]), time.monotonic())
    mach0 = machine_busy()
    time.sleep(1.0)  # let every device notice the loss before asking for "all connected"
    status = ask_all(
        dev_children, {"cmd": "wait_all", "timeout_s": args.phase_timeout}, args.phase_timeout + 30
    )
    cpu1 = (cpu_of([broker.pid]), time.monotonic())
    svc = ask_all(svc_children, {"cmd": "wait_all", "timeout_s": 30}, 60)
    back = sum(s["connected"] for s in status)
    t_full = max(s["t_full"] for s in status)
    all_back = back == args.devices and t_full > t_kill
    out = {
        "back": back,
        "all_back": all_back,
        "broker_listening_after_s": round(t_listen - t_kill, 2),
        "all_back_after_s": round(t_full - t_kill, 2) if all_back else None,
        "reconnect_rate_per_s": round(back / max(1e-9, t_full - t_listen), 1) if all_back else None,
        "service_back": all(s["connected"] == 1 for s in svc),
        "broker_cpu_util": round((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), 3),
        "machine_cpu_util": machine_util(mach0),
        "failed_attempts": sum(s["failures"] for s in status),
    }
    log(f"  all back after {out['all_back_after_s']} s ({back}/{args.devices})")
    return out


def _count_in_log(path: Path, needle: bytes) -> int:
    with contextlib.suppress(OSError):
        return path.read_bytes().count(needle)
    return 0


# -- output ----------------------------------------------------------------------------------


def machine(broker: str) -> dict[str, Any]:
    cpu = cpu_model()
    from OpenSSL import SSL

    version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if broker == "mosquitto":
            out = subprocess.run(
                ["mosquitto", "-h"], capture_output=True, text=True, timeout=5, check=False
            )
            version = out.stdout.splitlines()[0] if out.stdout else ""
        else:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f", "RabbitMQ ${Version}", "rabbitmq-server"],
                capture_output=True, text=True, timeout=5, check=False,
            )  # fmt: skip
            version = out.stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "openssl_client": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
        "broker": version,
    }


ROWS = (
    ("storm", "held", "connections held", "{}"),
    ("storm", "connects_per_s", "connects/s", "{:.0f}"),
    ("storm", "connect_p50_ms", "connect p50 ms", "{}"),
    ("storm", "connect_p99_ms", "connect p99 ms", "{}"),
    ("storm", "broker_cpu_ms_per_connect", "broker CPU ms/connect", "{}"),
    ("hold", "broker_rss_mib", "broker RSS MiB", "{}"),
    ("hold", "broker_kib_per_conn", "broker KiB/connection", "{}"),
    ("telemetry", "delivered_per_s", "delivered msg/s", "{:.0f}"),
    ("telemetry", "acked", "acked", "{}"),
    ("telemetry", "lost", "lost (acked - received)", "{}"),
    ("telemetry", "p50_ms", "latency p50 ms", "{}"),
    ("telemetry", "p99_ms", "latency p99 ms", "{}"),
    ("telemetry", "broker_cpu_util", "broker CPU (cores)", "{:.2f}"),
    ("telemetry", "machine_cpu_util", "machine CPU (share)", "{:.0%}"),
    ("restart", "all_back_after_s", "restart: all back after s", "{}"),
)


def print_rich(doc: dict[str, Any]) -> None:
    p = doc["params"]
    m = doc["machine"]
    runs = doc["runs"]
    console = report_console(
        "Fleet benchmark",
        f"{m['broker']} ({p['nodes']} node(s))" if p["broker"] == "rabbitmq" else m["broker"],
    )
    console.print(
        f"{p['devices']} devices in {p['procs']} load processes "
        f"(≤ {p['concurrency']} handshakes in flight each), {m['nproc']} cores; telemetry "
        f"{p['rate']:g} msg/s for {p['duration']:g} s; setup: home {doc['setup_home_s']} s, "
        f"{doc['setup_issue_ms_per_cert']} ms/certificate",
        highlight=False,
    )
    modes = list(runs)
    ratio = doc.get("ratio") or {}
    table = figures_table(("figure", *modes, "ratio"), left=("figure",))
    for phase, name, label, spec in ROWS:
        cells = []
        for mode in modes:
            value = (runs[mode].get(phase) or {}).get(name)
            cells.append("-" if value is None else spec.format(value))
        if all(c == "-" for c in cells):
            continue
        r = ratio.get(f"{phase}.{name}")
        table.add_row(label, *cells, "" if r is None else f"{r:.2f}")
    console.print(table)
    for mode in modes:
        setup = runs[mode].get("setup") or {}
        if setup:
            console.print(f"{mode} setup: {json.dumps(setup)}", highlight=False)
        storm = runs[mode].get("storm") or {}
        for sample in runs[mode].get("error_samples", []) + storm.get("error_samples", []):
            console.print(f"[red]{mode} error:[/] {sample}", highlight=False)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--broker", choices=("mosquitto", "rabbitmq"), default="mosquitto")
    ap.add_argument(
        "--modes",
        choices=tuple(MODES),
        default="both",
        help="bare broker, as TrustFleet runs it, or both side by side (default both)",
    )
    ap.add_argument("--nodes", type=int, default=2, help="RabbitMQ cluster nodes (default 2)")
    ap.add_argument(
        "--prefetch", type=int, default=1000, help="AMQP prefetch of the RabbitMQ consumer (1000)"
    )
    ap.add_argument("--devices", type=int, default=2000, help="simulated devices (default 2000)")
    ap.add_argument("--procs", type=int, default=2, help="device load processes (default 2)")
    ap.add_argument(
        "--concurrency", type=int, default=32, help="handshakes in flight per process (32)"
    )
    ap.add_argument("--rate", type=float, default=20000, help="telemetry msg/s in total (20000)")
    ap.add_argument("--duration", type=float, default=10.0, help="telemetry seconds (10; 0: skip)")
    ap.add_argument("--publishers", type=int, default=0, help="publishing devices (0: all)")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds held before sampling (3)")
    ap.add_argument("--keepalive", type=int, default=60, help="MQTT keepalive seconds (60)")
    ap.add_argument("--service-conns", type=int, default=1, help="service connections (1)")
    ap.add_argument(
        "--receive-maximum",
        type=int,
        default=65535,
        help="MQTT 5 Receive Maximum the service announces (default 65535, as the ingest client)",
    )
    ap.add_argument("--device-protocol", choices=("3.1.1", "5"), default="3.1.1")
    ap.add_argument(
        "--no-server-verify",
        dest="server_verify",
        action="store_false",
        help="devices do not verify the broker chain (saves load CPU)",
    )
    ap.add_argument("--backoff-base", type=float, default=0.5, help="reconnect backoff base s")
    ap.add_argument("--backoff-max", type=float, default=8.0, help="reconnect backoff cap s")
    ap.add_argument("--phase-timeout", type=float, default=180.0, help="storm/restart bound s")
    ap.add_argument("--max-time", type=float, default=1200.0, help="whole-run bound s (1200)")
    ap.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= _MAX_DEVICES:
        ap.error(f"--devices must be between 1 and {_MAX_DEVICES}")
    if not 1 <= args.procs <= _MAX_PROCS or args.procs > args.devices:
        ap.error(f"--procs must be between 1 and {_MAX_PROCS} and at most --devices")
    if not 1 <= args.concurrency <= 1024 or not 1 <= args.service_conns <= 8:
        ap.error("--concurrency must be within 1..1024 and --service-conns within 1..8")
    if not 0 <= args.duration <= _MAX_DURATION_S or not 0 <= args.hold <= _MAX_DURATION_S:
        ap.error(f"--duration and --hold must be within 0..{_MAX_DURATION_S:g} s")
    if not 0 < args.rate <= 1_000_000 or not 10 <= args.keepalive <= 3600:
        ap.error("--rate must be within (0, 1e6] and --keepalive within 10..3600")
    if not 10 <= args.phase_timeout <= 900 or not 60 <= args.max_time <= 7200:
        ap.error("--phase-timeout must be within 10..900 s and --max-time within 60..7200 s")
    if not 1 <= args.nodes <= 5 or not 1 <= args.prefetch <= 65535:
        ap.error("--nodes must be within 1..5 and --prefetch within 1..65535")
    if args.receive_maximum is not None and not 1 <= args.receive_maximum <= 65535:
        ap.error("--receive-maximum must be within 1..65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-fleet-"))
    children: list[Child] = []
    log = progress(quiet=args.json)
    doc: dict[str, Any] | None = None
    try:
        with interrupts_and_deadline(args.max_time):
            doc = run(args, tmp, children, log)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C, SIGTERM or --max-time); cleaning up", file=sys.stderr)
        return 130
    finally:
        for child in children:
            with contextlib.suppress(Exception):
                child.stop()
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=print_rich)
    ok = True
    for one in doc["runs"].values():
        t = one.get("telemetry") or {}
        r = one.get("restart") or {}
        ok &= one["storm"]["held"] == args.devices and t.get("lost", 0) == 0
        ok &= r.get("all_back", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
