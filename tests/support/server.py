"""A real TrustFleet server for integration and end-to-end tests.

``running_server`` initialises a home with the real CLI (``trustfleet server init``) and serves
it with the fleet harness's :class:`~trustfleet.sim.server.SimServer` (the demo's server too):
``trustfleet server run`` in its own session, ready when ``/readyz`` answers 200, stopped by its
process group afterwards, never by name. The yielded :class:`RunningServer`
runs CLI commands against the home, makes HTTPS requests (optionally with a client
certificate) and reads the store through the public store API.

Out-of-band certificates (an expired IDevID, one our manufacturing CA issued but never
registered) are made by :func:`issue_test_identity` in a child process, because one process can
have only one SoftHSM2 configuration active and the test process may see several homes.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from support.scripts import run_script
from trustfleet.settings import update_server_settings
from trustfleet.sim.overrides import parse_dotted
from trustfleet.sim.process import free_port, stop_group, wait_until
from trustfleet.sim.server import SimServer, https_status

__all__ = [
    "TRUSTFLEET",
    "RunningServer",
    "SoftwareDevice",
    "StoreSnapshot",
    "certs_from_pkcs7",
    "cli_json",
    "curl",
    "enroll_software",
    "free_port",
    "init_home",
    "issue_test_identity",
    "make_csr_der",
    "make_key",
    "make_software_device",
    "new_device_id",
    "one_error_line",
    "openssl",
    "run_cli",
    "running_server",
]

TRUSTFLEET = Path(sys.executable).parent / "trustfleet"
"""The console script of the installed package, next to the test interpreter."""

CLI_TIMEOUT_S = 180
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 30


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``trustfleet ARGS`` and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(TRUSTFLEET), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def cli_json(home: Path, *args: str | os.PathLike[str]) -> dict[str, Any]:
    """Run ``trustfleet ARGS --home HOME --json``, assert it succeeded, return its JSON object."""
    result = run_cli(*args, "--home", home, "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command printed on stderr (a non-zero exit, no traceback)."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    found = lines(result.stderr)
    assert len(found) == 1, result.stderr
    return found[0]


def init_home(
    home: Path,
    *,
    port: int,
    store_url: str | None = None,
    name: str | None = None,
    mqtt_port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``trustfleet server init`` for ``home`` with ``port`` in its URLs (asserts success).

    The broker's port is a free one unless given: tests never assume 8883 is free.
    """
    args: list[str] = ["server", "init", "--home", str(home), "--api-port", str(port), "--json"]
    # The offline folder <home>-offline (the default) and its PINs where SimServer looks.
    args += ["--pins-out", str(home.parent / f"{home.name}-offline-pins")]
    args += ["--mqtt-port", str(mqtt_port or free_port())]
    if store_url:
        args += ["--store-url", store_url]
    if name:
        args += ["--name", name]
    result = run_cli(*args)
    if result.returncode != 0:
        raise AssertionError(f"server init failed: {result.stderr}")
    return result


@dataclass(frozen=True)
class StoreSnapshot:
    """What a request may change: certificate count, device states, refusal events."""

    certificates: int
    device_states: dict[str, str]
    last_event_id: int


@dataclass
class RunningServer:
    """A running ``trustfleet server run`` and its home."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    sim: SimServer | None = field(default=None, repr=False)
    """The harness's server for this home (made here when a kit did not pass one)."""

    def __post_init__(self) -> None:
        if self.sim is None:
            self.sim = SimServer(self.home, api_port=self.port, log=self.log)

    @property
    def _sim(self) -> SimServer:
        assert self.sim is not None
        return self.sim

    @property
    def base_url(self) -> str:
        return self._sim.base_url

    @property
    def ca_bundle(self) -> Path:
        return self._sim.ca_bundle

    def cli(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        """Run ``trustfleet ARGS --home HOME``."""
        return run_cli(*args, "--home", str(self.home))

    def cli_json(self, *args: str | os.PathLike[str]) -> Any:
        """Run ``trustfleet ARGS --home HOME --json``; the parsed output (fails on error)."""
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def ssl_context(self, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        """A TLS client context trusting the home's bundle, with an optional client identity."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> httpx.Response:
        """One HTTPS request on a fresh connection."""
        with httpx.Client(
            verify=self.ssl_context(cert=cert, key=key), timeout=REQUEST_TIMEOUT_S
        ) as client:
            return client.request(method, self.base_url + path, content=content, headers=headers)

    def est(
        self, operation: str, body: bytes, *, cert: Path | None, key: Path | None
    ) -> httpx.Response:
        """POST to ``/.well-known/est/<operation>`` with a PKCS#10 content type."""
        return self.request(
            "POST",
            f"/.well-known/est/{operation}",
            content=body,
            headers={"content-type": "application/pkcs10"},
            cert=cert,
            key=key,
        )

    @property
    def runtime(self) -> Any:
        """The home's runtime in this process (store only; CA keys are never opened here)."""
        return self._sim.runtime

    def snapshot(self) -> StoreSnapshot:
        """The parts of the store that a refused request must leave alone."""
        with self.runtime.uow.begin() as tx:
            devices = tx.devices.list(limit=1000)
            events = _all_events(tx)
            return StoreSnapshot(
                certificates=tx.certificates.count(),
                device_states={d.id: d.state for d in devices},
                last_event_id=events[-1].id if events else 0,
            )

    def events_since(self, snapshot: StoreSnapshot) -> list[Any]:
        """Security events appended after ``snapshot``."""
        with self.runtime.uow.begin() as tx:
            return _all_events(tx, after_id=snapshot.last_event_id)

    def server_pids(self) -> list[int]:
        """The server's processes (its session), read from /proc."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) == self.process.pid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def close(self) -> None:
        self._sim.close_runtime()


def _all_events(tx: Any, *, after_id: int = 0) -> list[Any]:
    events: list[Any] = []
    while True:
        page = tx.events.list(after_id=after_id, limit=1000)
        events.extend(page)
        if len(page) < 1000:
            return events
        after_id = page[-1].id


def _wait_ready(server: RunningServer, deadline_s: float) -> None:
    """Wait (bounded by ``deadline_s``) until ``/healthz`` answers 200 over TLS (liveness)."""

    def live_or_exited() -> bool:
        if server.process.poll() is not None:
            return True
        return https_status(f"{server.base_url}/healthz", cafile=server.ca_bundle) == 200

    wait_until(live_or_exited, timeout_s=deadline_s, what="the server's /healthz")
    if server.process.poll() is not None:
        raise AssertionError(
            f"server exited with {server.process.returncode}: {server.log.read_text()}"
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session: its whole process group, by pid."""
    stop_group(process, timeout_s=STOP_TIMEOUT_S)


def override_settings(home: Path, settings: Mapping[str, str]) -> None:
    """Set ``{"section.key": "toml value"}`` in the home's trustfleet.toml, through the models.

    A thin adapter over the harness's typed overrides: each value is parsed as TOML, and an
    unknown section or key, or a value the settings refuse, fails.
    """
    update_server_settings(home, parse_dotted(settings))


@contextmanager
def running_server(
    tmp_path: Path,
    *,
    store_url: str | None = None,
    workers: int = 1,
    settings: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Init a home under ``tmp_path`` (with ``settings`` overridden) and serve it.

    The server is the harness's :class:`~trustfleet.sim.server.SimServer`: ready when
    ``/readyz`` answers 200, stopped by its process group.

    Example: ``settings={"attestation.enabled": "false"}`` for tests whose devices are copies
    of one device, which attestation rightly tells apart and quarantines.
    """
    port = free_port()
    home = tmp_path / "home"
    init_home(home, port=port, store_url=store_url)
    if settings:
        override_settings(home, settings)
    sim = SimServer(home, api_port=port, log=tmp_path / "server.log", workers=workers)
    server: RunningServer | None = None
    try:
        sim.start(timeout_s=READY_TIMEOUT_S)  # ready: /readyz says every component is up
        assert sim.process is not None and sim.process.proc is not None
        server = RunningServer(home=home, port=port, process=sim.process.proc, log=sim.log, sim=sim)
        yield server
    finally:
        if server is not None:
            server.close()
        sim.stop()


_ISSUE_SCRIPT = r"""
import json, sys
from datetime import datetime, timedelta
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from trustfleet.pki import IDEVID, issue_device_certificate
from trustfleet.services._certs import record_certificate
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
if a["now"] == "ca-start":
    now = rt.ca_certificate("manufacturing").not_valid_before_utc + timedelta(seconds=1)
else:
    now = datetime.fromisoformat(a["now"])
key = ec.generate_private_key(ec.SECP256R1())
cert = issue_device_certificate(
    issuer=rt.issuer("manufacturing"), public_key=key.public_key(), device_id=a["device_id"],
    profile=IDEVID, organization=rt.settings.pki.organization, now=now,
    validity=timedelta(seconds=a["validity_s"]), model="test-v1")
if a["register"]:
    with rt.uow.begin() as tx:
        tx.devices.add(id=a["device_id"], model="test-v1", state="manufactured", now=now)
        record_certificate(tx, cert, issuer="manufacturing", kind="idevid",
                           device_id=a["device_id"], now=now)
Path(a["key"]).write_bytes(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
Path(a["cert"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
rt.close()
"""


def issue_test_identity(
    home: Path,
    *,
    device_id: str,
    out_dir: Path,
    now: str,
    validity_s: int,
    register: bool,
) -> tuple[Path, Path]:
    """An IDevID from the home's manufacturing CA with a software key, made out of band.

    Test setup only: ``now`` (ISO 8601, or ``"ca-start"`` for one second after the CA's own
    start, which init backdates) and a short ``validity_s`` give an already expired
    certificate; ``register`` adds the device and certificate to the store exactly as
    ``services/factory.py`` does. Returns ``(cert, key)`` paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cert, key = out_dir / f"{device_id}.pem", out_dir / f"{device_id}.key"
    args = {
        "home": str(home),
        "device_id": device_id,
        "now": now,
        "validity_s": validity_s,
        "register": register,
        "cert": str(cert),
        "key": str(key),
    }
    run_script(_ISSUE_SCRIPT, args, timeout_s=CLI_TIMEOUT_S)
    return cert, key


def openssl(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    input_bytes: bytes | None = None,
) -> bytes:
    """Run the system ``openssl``; its stdout (fails the test with stderr on error)."""
    result = subprocess.run(
        ["openssl", *map(str, args)],
        capture_output=True,
        input=input_bytes,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, f"openssl {args[0]} failed: {result.stderr.decode()}"
    return result.stdout


def curl(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the system ``curl`` (bounded); the completed process."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(REQUEST_TIMEOUT_S), *map(str, args)],
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def lines(text: str) -> Sequence[str]:
    """Non-empty lines of ``text``."""
    return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class SoftwareDevice:
    """A device whose IDevID key is a software key file (``factory sign-csr``)."""

    device_id: str
    key: Path
    idevid: Path


def new_device_id(prefix: str = "dev") -> str:
    """A unique, well-formed device id."""
    return f"{prefix}-{secrets.token_hex(6)}"


def make_key(path: Path, *, algorithm: str = "EC", curve: str = "P-256", bits: int = 2048) -> Path:
    """A software private key made by ``openssl genpkey`` (PEM, mode 0600)."""
    if algorithm == "EC":
        openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-out", path
        )
    else:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", path)
    path.chmod(0o600)
    return path


def make_csr_der(key: Path, *, cn: str) -> bytes:
    """A PKCS#10 CSR with subject ``CN=cn`` made by ``openssl req``, DER."""
    return openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-outform", "DER")


def make_software_device(
    server: RunningServer, work: Path, *, prefix: str = "sw"
) -> SoftwareDevice:
    """A registered device with a software IDevID key, through ``factory sign-csr``."""
    device_id = new_device_id(prefix)
    work.mkdir(parents=True, exist_ok=True)
    key = make_key(work / f"{device_id}-idevid.key")
    csr = work / f"{device_id}-idevid.csr"
    csr.write_bytes(make_csr_der(key, cn=device_id))
    idevid = work / f"{device_id}-idevid.pem"
    result = server.cli("factory", "sign-csr", "--csr", csr, "--out", idevid)
    assert result.returncode == 0, result.stderr
    return SoftwareDevice(device_id=device_id, key=key, idevid=idevid)


def certs_from_pkcs7(body: bytes) -> list[x509.Certificate]:
    """The certificates of an EST certs-only response (base64 DER PKCS#7)."""
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))


def enroll_software(
    server: RunningServer,
    device: SoftwareDevice,
    work: Path,
    *,
    operation: str = "simpleenroll",
    cert: Path | None = None,
    key: Path | None = None,
) -> tuple[Path, Path]:
    """Enroll (or re-enroll) with a new software key; returns ``(ldevid, key)`` paths."""
    new_key = make_key(work / f"{device.device_id}-{secrets.token_hex(3)}.key")
    body = base64.b64encode(make_csr_der(new_key, cn=device.device_id))
    response = server.est(operation, body, cert=cert or device.idevid, key=key or device.key)
    assert response.status_code == 200, response.text
    (issued,) = certs_from_pkcs7(response.content)
    ldevid = new_key.with_suffix(".pem")
    ldevid.write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    return ldevid, new_key
