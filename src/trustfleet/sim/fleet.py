"""A simulated fleet: one server and virtual devices addressed by role.

:class:`SimFleet` provisions devices through the factory service, names the ones a scenario
needs by role (``fleet.device("rollback")``, never ``device_ids[2]``), runs their agents, and
answers questions about the fleet's real state from the store (device states, firmware,
telemetry, quarantine, verdicts) and from independent clients (OCSP and CRL over HTTPS).
Scenarios (:mod:`trustfleet.sim.scenarios`) are written against it; so are tests.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.pki import ocsp_request_for
from trustfleet.server.monitor_worker import CURSOR as MONITOR_CURSOR
from trustfleet.services.factory import provision_devices
from trustfleet.services.home import AUDIT_VKEY_FILE
from trustfleet.sim.agent import SimAgent
from trustfleet.sim.process import wait_until
from trustfleet.sim.server import SimServer, console_script
from trustfleet.sim.witness import SimWitness
from trustfleet.store.alert_records import AlertQuery

__all__ = ["FLEET_ROLE", "SimFleet", "assign_roles", "utc_now"]

FLEET_ROLE = "fleet"
"""The role of every device no scenario singled out."""
_OCSP_MAX_BYTES = 64 * 1024
_CRL_MAX_BYTES = 1024 * 1024
_HTTP_TIMEOUT_S = 10.0
_PAGE = 1000
_MAX_ALERTS = 100_000


def _service_side(evidence: Any) -> bool:
    """Whether an alert's evidence names ``svc-`` metrics only."""
    metrics = evidence.get("metrics") if isinstance(evidence, dict) else None
    names = list(metrics) if isinstance(metrics, dict) else []
    return bool(names) and all(str(n).startswith("svc-") for n in names)


def utc_now() -> datetime:
    """The current time, UTC (the harness passes time to the services explicitly)."""
    return datetime.now(UTC)


def assign_roles(device_ids: Sequence[str], roles: Sequence[str]) -> dict[str, str]:
    """Give each role one device, in order; ``{role: device_id}``.

    Raises:
        InvalidInput: Fewer devices than roles, a role given twice, or the reserved role
            ``fleet`` (code ``sim.fleet.roles``).
    """
    if len(set(roles)) != len(roles) or FLEET_ROLE in roles:
        raise InvalidInput(f"roles must be distinct and not '{FLEET_ROLE}': {list(roles)}")
    if len(device_ids) < len(roles):
        raise InvalidInput(
            f"{len(roles)} roles need at least {len(roles)} devices, got {len(device_ids)}",
            code="sim.fleet.roles",
        )
    return dict(zip(roles, device_ids, strict=False))


@dataclass
class SimFleet:
    """A server, its devices by role, and probes of the fleet's state.

    Attributes:
        workdir: Where everything lives (``server/``, ``devices/``, images).
        size: How many devices :meth:`provision` makes in a scenario.
        model: The devices' hardware model.
        server: The server (set by :meth:`create_server`).
        witness: The witness of the server's audit log (set by :meth:`add_witness`).
        agent_command: The agent of another installation the devices run (see
            :class:`~trustfleet.sim.agent.SimAgent`); None: this interpreter's simulated agent.
    """

    workdir: Path
    size: int = 4
    model: str = "sim-v1"
    server: SimServer | None = None
    agent_command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.devices_dir = self.workdir / "devices"
        self.agents: dict[str, SimAgent] = {}
        self.roles: dict[str, str] = {}
        self.witness: SimWitness | None = None
        self.on_progress: Callable[[str, int, int], None] = lambda _what, _done, _total: None

    # -- the server -------------------------------------------------------------------

    def create_server(self, *, organization: str = "TrustFleet Demo") -> SimServer:
        """Make the server's home under ``workdir/server`` (not started)."""
        self.server = SimServer.create(
            self.workdir / "server",
            now=utc_now(),
            organization=organization,
            log=self.workdir / "server.log",
        )
        return self.server

    def add_witness(self, *, name: str = "witness.demo/w1") -> SimWitness:
        """A witness of the server's audit log under ``workdir/witness``: its own home, token
        and key, served on a free loopback port, and in the server's ``[audit] witnesses``
        (before ``server run`` starts).

        Raises:
            Unavailable: The witness could not be made or did not start.
        """
        vkey = (self.srv.home / AUDIT_VKEY_FILE).read_text(encoding="ascii").strip()
        witness = SimWitness.create(
            self.workdir / "witness", name=name, logs=[vkey], log=self.workdir / "witness.log"
        )
        self.witness = witness.start()
        self.srv.configure({"audit": {"witnesses": [witness.server_entry()]}})
        return witness

    @property
    def srv(self) -> SimServer:
        """The server (it must have been created)."""
        if self.server is None:
            raise NotFound("the fleet has no server yet")
        return self.server

    # -- devices ----------------------------------------------------------------------

    def provision(self, count: int, *, roles: Sequence[str] = ()) -> list[str]:
        """Make ``count`` devices through the factory service and give ``roles`` devices.

        Raises:
            InvalidInput: ``count`` is out of range or smaller than the number of roles.
        """
        if count < len(roles):
            assign_roles([], roles)  # raises the one readable error
        made = provision_devices(
            self.srv.runtime, out_dir=self.devices_dir, count=count, model=self.model, now=utc_now()
        )
        ids = [d.device_id for d in made]
        self.agents = {
            d: SimAgent(self.devices_dir / d, agent_command=self.agent_command) for d in ids
        }
        self.roles = assign_roles(ids, roles)
        return ids

    @property
    def device_ids(self) -> list[str]:
        """Every device, in provisioning order."""
        return list(self.agents)

    def device(self, role: str) -> str:
        """The id of the device that plays ``role``.

        Raises:
            NotFound: No device plays it.
        """
        if role not in self.roles:
            raise NotFound(f"no device plays '{role}'", hint=f"roles: {sorted(self.roles)}")
        return self.roles[role]

    def role_of(self, device_id: str) -> str:
        """The role ``device_id`` plays (``fleet`` when none)."""
        return next((r for r, d in self.roles.items() if d == device_id), FLEET_ROLE)

    def agent(self, role_or_id: str) -> SimAgent:
        """The agent of a device, by role or by id."""
        device_id = self.roles.get(role_or_id, role_or_id)
        if device_id not in self.agents:
            raise NotFound(f"no device '{role_or_id}' in the fleet")
        return self.agents[device_id]

    def running(self, *, but: Iterable[str] = ()) -> list[str]:
        """Devices whose agent runs now, without those in ``but``."""
        left_out = set(but)
        return [d for d, a in self.agents.items() if a.running and d not in left_out]

    def stop(self) -> None:
        """Stop every agent, then the server, then the witness; close the store handle."""
        for agent in self.agents.values():
            agent.stop()
        if self.server is not None:
            self.server.stop()
        if self.witness is not None:
            self.witness.stop()

    # -- the fleet's state (store) ----------------------------------------------------

    def device_states(self, device_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Each device's state in the store."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            return {d: tx.devices.require(d).state for d in device_ids or self.device_ids}

    def inventory_states(self) -> dict[str, str]:
        """Every device of the store (the fleet's and any other, e.g. the LwM2M stage's), with
        its state."""
        states: dict[str, str] = {}
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            while page := tx.devices.list(limit=1000, offset=len(states)):
                states.update({record.id: record.state for record in page})
        return states

    def firmware(self, device_ids: Iterable[str] | None = None) -> dict[str, str | None]:
        """Each device's firmware version as the store knows it."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            return {
                d: tx.devices.require(d).firmware_version for d in device_ids or self.device_ids
            }

    def telemetry_counts(self) -> dict[str, int]:
        """How many telemetry rows the store holds per device."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            return {d: tx.telemetry.count(device_id=d) for d in self.device_ids}

    def last_telemetry_at(self, device_id: str) -> datetime | None:
        """When the store received the device's newest telemetry row."""
        last: datetime | None = None
        after = 0
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            while page := tx.telemetry.list_for_device(device_id, limit=_PAGE, after_id=after):
                last, after = page[-1].received_at, page[-1].id
        return last

    def quarantine_of(self, device_id: str) -> Any:
        """The device's quarantine record, or None."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            return tx.attestation.quarantine(device_id)

    def last_findings(self, device_id: str) -> list[str]:
        """The finding codes of the device's newest attestation verdict."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            last = tx.attestation.results(device_id, limit=1)
        return sorted({str(f.get("code")) for f in last[0].findings}) if last else []

    def wait_telemetry(
        self, device_ids: Iterable[str], *, rows: int, since: dict[str, int], timeout_s: float
    ) -> dict[str, int]:
        """Wait until each device has ``rows`` more telemetry rows than ``since``; the counts.

        Raises:
            Unavailable: Not within ``timeout_s``.
        """
        wanted = list(device_ids)

        def grown() -> dict[str, int] | None:
            counts = self.telemetry_counts()
            return counts if all(counts[d] >= since[d] + rows for d in wanted) else None

        return wait_until(grown, timeout_s=timeout_s, what=f"{rows} telemetry row(s) each")

    # -- metrics and alerts (issue 13) -------------------------------------------------

    def follow_scenario(
        self, scenario: str, device_ids: Sequence[str], *, seed: int = 0, profile: str = "",
        interval_s: int = 1,
    ) -> None:  # fmt: skip
        """Make the metrics of ``device_ids`` follow ``scenario`` (file or built-in name) as
        devices 0, 1, … of one fleet; running agents restart to take it up."""
        for index, device_id in enumerate(device_ids):
            agent = self.agents[device_id]
            agent.follow_scenario(
                scenario, device_index=index, devices=len(device_ids), seed=seed,
                profile=profile, interval_s=interval_s,
            )  # fmt: skip
            if agent.running:
                agent.restart()

    def metrics_counts(self) -> dict[str, int]:
        """How many device metrics windows the store holds per device."""
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            counts = tx.monitor_metrics.counts(source="device")
        return {d: counts.get(d, 0) for d in self.device_ids}

    def wait_metrics(
        self, device_ids: Iterable[str], *, windows: int, since: dict[str, int], timeout_s: float
    ) -> dict[str, int]:
        """Wait until each device has ``windows`` more metrics windows than ``since``.

        Raises:
            Unavailable: Not within ``timeout_s``.
        """
        wanted = list(device_ids)

        def grown() -> dict[str, int] | None:
            counts = self.metrics_counts()
            return counts if all(counts[d] >= since.get(d, 0) + windows for d in wanted) else None

        return wait_until(grown, timeout_s=timeout_s, what=f"{windows} metrics window(s) each")

    def wait_monitor_scored(self, *, timeout_s: float) -> None:
        """Wait until the monitor has scored every metrics window stored now.

        Raises:
            Unavailable: Not within ``timeout_s``.
        """
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            last_id = tx.monitor_metrics.last_id()

        def scored() -> bool:
            with self.srv.runtime.uow.begin(read_only=True) as tx:
                return tx.monitor_metrics.cursor(MONITOR_CURSOR) >= last_id

        wait_until(scored, timeout_s=timeout_s, what="the monitor to score every window")

    def alert_kinds(self, *, service_side: bool | None = None) -> dict[str, list[str]]:
        """The kinds of every device's alerts (any state), by device; with ``service_side``,
        only the alerts whose evidence is (True) or is not (False) service-side signals only
        (``svc-`` metrics: what the broker, EST and attestation saw)."""
        kinds: dict[str, list[str]] = {}
        with self.srv.runtime.uow.begin(read_only=True) as tx:
            for offset in range(0, _MAX_ALERTS, _PAGE):
                page = tx.alerts.page(AlertQuery(), limit=_PAGE, offset=offset)
                for alert in page:
                    if service_side is None or _service_side(alert.evidence) == service_side:
                        kinds.setdefault(alert.device_id, []).append(alert.kind)
                if len(page) < _PAGE:
                    break
        return {d: sorted(k) for d, k in kinds.items()}

    # -- independent clients ----------------------------------------------------------

    def ocsp_status(self, cert: x509.Certificate) -> str:
        """The server's OCSP answer for ``cert`` (``GOOD``, ``REVOKED``, ``UNKNOWN``)."""
        issuer = x509.load_pem_x509_certificate(
            (self.srv.home / "public" / "device-ca.pem").read_bytes()
        )
        request = urllib.request.Request(  # noqa: S310 - https to the harness's own server
            f"{self.srv.base_url}/ocsp",
            data=ocsp_request_for(cert, issuer),
            headers={"content-type": "application/ocsp-request"},
        )
        with urllib.request.urlopen(request, context=self._tls(), timeout=_HTTP_TIMEOUT_S) as resp:  # noqa: S310
            answer = ocsp.load_der_ocsp_response(resp.read(_OCSP_MAX_BYTES))
        return answer.certificate_status.name

    def crl_lists(self, serial: int) -> bool:
        """Whether the device CA's published CRL lists ``serial``."""
        url = f"{self.srv.base_url}/crl/device.crl"
        with urllib.request.urlopen(url, context=self._tls(), timeout=_HTTP_TIMEOUT_S) as resp:  # noqa: S310
            crl = x509.load_der_x509_crl(resp.read(_CRL_MAX_BYTES))
        return crl.get_revoked_certificate_by_serial_number(serial) is not None

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.srv.ca_bundle))

    def attest(self, device_ids: Sequence[str], *, wait_s: int) -> dict[str, dict[str, Any]]:
        """``trustfleet attest run`` for each device, concurrently; each verdict (or error).

        A child process each: this process signs releases through python-pkcs11, and a
        challenge is published with the service key through awscrt, which must not share
        the token login.
        """
        argv = [str(console_script("trustfleet")), "attest", "run", "--home", str(self.srv.home)]
        procs = {
            d: subprocess.Popen(
                [*argv, d, "--json", "--wait", str(wait_s)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            for d in device_ids
        }
        verdicts: dict[str, dict[str, Any]] = {}
        for device_id, proc in procs.items():
            out, err = proc.communicate(timeout=wait_s + 60)
            try:
                verdicts[device_id] = json.loads(out)
            except json.JSONDecodeError:
                verdicts[device_id] = {"ok": False, "error": err.decode(errors="replace")[-300:]}
        return verdicts
