"""Revocation latency: revoke → live MQTT connection closed → reconnect refused.

Runs a real fleet service (`trustfleet server run`: HTTPS, Mosquitto, ingest, revocation
watcher) on free loopback ports, enrolls N software-key devices over EST (real IDevIDs from the
manufacturing CA, real LDevIDs from the device CA), holds one MQTT 5 / TLS 1.3 connection per
device (paho-mqtt), then revokes them one at a time through the service function and measures:

* disconnect: from the revoke call until the device's live connection is closed by the broker;
* refused: from the revoke call until a fresh connection attempt is refused at the handshake.

Prints p50/p99 (and every sample with --json). Loopback only; bounded in count and time.

    .venv/bin/python benchmarks/revoke.py [--devices 20] [--json]
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from _procs import benchmark_parser, serve_home
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from trustfleet.pki import parse_certs_only
from trustfleet.services.factory import sign_csr
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.revocation import revoke_device
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.sim.process import ManagedProcess, free_port, port_open, wait_until

MAX_DEVICES = 200
WAIT_S = 15.0
READY_S = 60.0  # the service start (a bound on a loaded machine, not a figure)
POLL_S = 0.02  # the latencies are measured when a poll sees the change
console = Console(stderr=True)


@dataclass
class Device:
    device_id: str
    folder: Path
    client: mqtt.Client | None = None
    disconnected_at: float | None = None


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def _make_device(rt: Runtime, work: Path, index: int, *, api_port: int, bundle: Path) -> Device:
    device_id = f"revoke-bench-{index:04d}"
    folder = work / device_id
    folder.mkdir()
    idev_key, op_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    made = sign_csr(
        rt,
        csr_bytes=_csr(idev_key, device_id).public_bytes(serialization.Encoding.PEM),
        model="bench",
        now=datetime.now(UTC),
    )
    (folder / "idevid.pem").write_bytes(made.certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "idevid.key").write_bytes(_pem(idev_key))
    ctx = ssl.create_default_context(cafile=str(bundle))
    ctx.load_cert_chain(str(folder / "idevid.pem"), str(folder / "idevid.key"))
    conn = http.client.HTTPSConnection("localhost", api_port, context=ctx, timeout=30)
    body = base64.encodebytes(_csr(op_key, device_id).public_bytes(serialization.Encoding.DER))
    conn.request(
        "POST", "/.well-known/est/simpleenroll", body, {"content-type": "application/pkcs10"}
    )
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"enrollment of {device_id} failed: {response.status} {data[:200]!r}")
    (cert,) = parse_certs_only(data)
    (folder / "ldevid.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ldevid.key").write_bytes(_pem(op_key))
    return Device(device_id=device_id, folder=folder)


def _client(device: Device, *, bundle: Path) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=mqtt.MQTTv5
    )
    ctx = ssl.create_default_context(cafile=str(bundle))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(device.folder / "ldevid.pem"), str(device.folder / "ldevid.key"))
    client.tls_set_context(ctx)
    return client


def _connect(device: Device, *, bundle: Path, port: int) -> None:
    client = _client(device, bundle=bundle)
    connected = threading.Event()

    def on_connect(*_args: object) -> None:
        connected.set()

    def on_disconnect(*_args: object) -> None:
        if device.disconnected_at is None:
            device.disconnected_at = time.monotonic()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect("localhost", port, keepalive=60)
    client.loop_start()
    if not connected.wait(WAIT_S):
        raise RuntimeError(f"{device.device_id} could not connect")
    client.reconnect_delay_set(min_delay=60, max_delay=120)  # no automatic reconnect during timing
    device.client = client


def _refused(device: Device, *, bundle: Path, port: int) -> bool:
    client = _client(device, bundle=bundle)
    try:
        client.connect("localhost", port, keepalive=10)
        client.loop(timeout=2.0)
        return not client.is_connected()
    except (ssl.SSLError, OSError):
        return True
    finally:
        client.disconnect()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(devices: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="tf-bench-revoke-"))
    api_port, mqtt_port = free_port(), free_port()
    server: ManagedProcess | None = None
    fleet: list[Device] = []
    try:
        home = work / "home"
        now = datetime.now(UTC)
        options = HomeOptions(api_port=api_port, mqtt_port=mqtt_port, pins_out=work / "pins")
        init_server_home(home, options=options, now=now)
        bundle = home / "public" / "ca-bundle.pem"
        server = serve_home(
            home, ready=lambda: port_open(api_port) and port_open(mqtt_port), timeout_s=READY_S
        )
        rt = Runtime.open(load_server_settings(home))
        console.print(f"enrolling {devices} devices over EST and connecting them over MQTT …")
        fleet = [
            _make_device(rt, work, i, api_port=api_port, bundle=bundle) for i in range(devices)
        ]
        for device in fleet:
            _connect(device, bundle=bundle, port=mqtt_port)
        disconnect_s: list[float] = []
        refused_s: list[float] = []
        console.print("revoking one device at a time …")
        for device in fleet:
            started = time.monotonic()
            revoke_device(
                rt, device.device_id, reason="keyCompromise", actor="bench", now=datetime.now(UTC)
            )
            wait_until(
                lambda d=device: d.disconnected_at is not None,
                timeout_s=WAIT_S,
                what=f"{device.device_id} kicked",
                poll_s=POLL_S,
            )
            assert device.disconnected_at is not None
            disconnect_s.append(device.disconnected_at - started)
            wait_until(
                lambda d=device: _refused(d, bundle=bundle, port=mqtt_port),
                timeout_s=WAIT_S,
                what="refusal",
                poll_s=POLL_S,
            )
            refused_s.append(time.monotonic() - started)
        rt.close()
        return {
            "benchmark": "revoke",
            "devices": devices,
            "disconnect_s": {
                "p50": _pct(disconnect_s, 0.5),
                "p99": _pct(disconnect_s, 0.99),
                "max": max(disconnect_s),
                "samples": disconnect_s,
            },
            "refused_s": {
                "p50": _pct(refused_s, 0.5),
                "p99": _pct(refused_s, 0.99),
                "max": max(refused_s),
                "samples": refused_s,
            },
            "mean_disconnect_s": statistics.mean(disconnect_s),
        }
    finally:
        for device in fleet:
            if device.client is not None:
                device.client.loop_stop()
        if server is not None:
            server.stop(timeout_s=20)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--devices", type=int, default=20, help="devices to revoke (default 20)")
    args = parser.parse_args()
    if not 1 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be 1..{MAX_DEVICES}")
    result = run(args.devices)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table("step", "p50 s", "p99 s", "max s", title=f"revocation, {args.devices} devices")
    for key, label in (
        ("disconnect_s", "revoke → disconnected"),
        ("refused_s", "revoke → refused"),
    ):
        row = result[key]
        assert isinstance(row, dict)
        table.add_row(label, f"{row['p50']:.3f}", f"{row['p99']:.3f}", f"{row['max']:.3f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
