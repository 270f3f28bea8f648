"""``trustfleet server run``: HTTPS workers, the MQTT broker and the ingest workers.

Start-up, in order, before anything is written or started: the home's lock (one server per
home), what a killed run left (stopped safely), both ports free. Then the broker, the
workers, and the supervision loop: restarts with backoff (a kind of worker that keeps dying
degrades the service, never ends it), revocations to the broker, the children record and
the status file behind ``/readyz``. SIGINT or SIGTERM stop everything in order.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

from trustfleet.errors import TrustFleetError, Unavailable
from trustfleet.processes import HOME_ENV
from trustfleet.server._attest_side import attest_process_main
from trustfleet.server._broker_side import BrokerSide
from trustfleet.server._https_worker import https_worker_main
from trustfleet.server._leftovers import hold_home, stop_leftovers
from trustfleet.server._restarts import Crash, RestartPolicy
from trustfleet.server._runloop import RunLoop
from trustfleet.server._supervise import ProcessSpec, Supervisor
from trustfleet.server.audit_sequencer import sequencer_process_main
from trustfleet.server.campaign_ticker import ticker_process_main
from trustfleet.server.ingest_worker import ingest_process_main
from trustfleet.server.lwm2m_worker import lwm2m_process_main
from trustfleet.server.monitor_worker import monitor_process_main
from trustfleet.services.health import record_service_change
from trustfleet.services.runtime import Runtime
from trustfleet.services.upgrade import UpgradeReport, upgrade_store
from trustfleet.settings import ServerSettings

__all__ = ["CHILD_MODULES", "ServiceStatus", "StopReport", "run_server"]

logger = logging.getLogger(__name__)

_INGEST_READY_TIMEOUT_S: Final = 20.0
CHILD_MODULES: Final = tuple(
    f.__module__
    for f in (
        ingest_process_main, https_worker_main, ticker_process_main, sequencer_process_main,
        attest_process_main, monitor_process_main, lwm2m_process_main,
    )
)  # fmt: skip
"""What the fork server imports once, before it forks the children (their entry points)."""
EXIT_INTERRUPTED: Final = 130


@dataclass(frozen=True)
class ServiceStatus:
    """What ``server run`` serves, for its readiness message.

    Attributes:
        api_port: The HTTPS port.
        mqtt_port: The MQTT (device) port.
        broker_running: Whether Mosquitto is up (False: see ``broker_error``; retried).
        broker_error: Why the broker did not start, if it did not.
        ingest_workers: How many ingest processes run.
        ingest_ready: Whether all of them had their subscriptions granted in time.
        leftovers_stopped: Processes a killed earlier run had left, stopped at start.
        migrated: The store's migration at start ("0009 → 0010, copy in …"), if one ran.
    """

    api_port: int
    mqtt_port: int
    broker_running: bool
    broker_error: str | None
    ingest_workers: int
    ingest_ready: bool
    leftovers_stopped: tuple[str, ...] = ()
    migrated: str | None = None


@dataclass(frozen=True)
class StopReport:
    """How ``server run`` ended: the signal (if any), what it stopped, its exit code."""

    signal: str | None
    children_stopped: int
    broker_stopped: bool
    exit_code: int


class _Signals:
    """SIGINT/SIGTERM set ``event`` (the first one is remembered); restored by ``restore``."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._old = {s: signal.signal(s, self._on) for s in (signal.SIGTERM, signal.SIGINT)}

    def _on(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self.event.set()

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def run_server(
    settings: ServerSettings,
    *,
    port: int | None = None,
    workers: int | None = None,
    mqtt_port: int | None = None,
    on_ready: Callable[[ServiceStatus], None] | None = None,
    on_stopped: Callable[[StopReport], None] | None = None,
) -> int:
    """Serve HTTPS, the MQTT broker and the workers until SIGTERM/SIGINT.

    Returns:
        The exit code: 0 after SIGTERM, 130 after SIGINT (also during start-up).

    Raises:
        Conflict: Another ``server run`` serves this home (code ``server.home.locked``).
        Unavailable: The HTTPS or MQTT port is in use (code ``server.port_in_use``).
    """
    signals = _Signals()
    try:
        lock = hold_home(settings.home)
        try:
            upgrade = _upgrade(settings)
            service = _Service(settings, signals, port=port, workers=workers, mqtt_port=mqtt_port)
            service.migrated = _migrated_text(upgrade)
            report = service.run(on_ready or (lambda _status: None))
        finally:
            lock.release()
    finally:
        signals.restore()
    if on_stopped is not None:
        on_stopped(report)
    return report.exit_code


def _upgrade(settings: ServerSettings) -> UpgradeReport | None:
    """Migrate a store that is behind (a copy first); a store that cannot be reached now is
    left to the readiness check (``/readyz`` reports it), as before migrations ran here."""
    try:
        return upgrade_store(settings, now=datetime.now(UTC))
    except Unavailable as exc:
        logger.warning("cannot check the store's schema at start: %s", exc.one_line())
        return None


def _migrated_text(report: UpgradeReport | None) -> str | None:
    if report is None:
        return None
    copy = f", a copy of the store first in {report.backup}" if report.backup else ""
    return f"store migrated from schema {report.from_revision} to {report.to_revision}{copy}"


def require_free_port(host: str, port: int, *, what: str, option: str) -> None:
    """Fail with one line if anything listens on ``host:port`` (even with SO_REUSEPORT).

    Raises:
        Unavailable: The port is taken (code ``server.port_in_use``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))  # no SO_REUSEPORT: any listener there makes this fail
        except OSError as exc:
            raise Unavailable(
                f"the {what} port {host}:{port} is in use ({exc.strerror})",
                hint=f"stop what listens there or choose another port with {option}",
                code="server.port_in_use",
            ) from exc


@dataclass
class _Service:
    settings: ServerSettings
    signals: _Signals
    port: int | None
    workers: int | None
    mqtt_port: int | None
    migrated: str | None = None
    _ready: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or self.settings.api.port
        self.workers = self.workers or self.settings.api.workers
        self.mqtt_port = self.mqtt_port or self.settings.broker.port

    def run(self, on_ready: Callable[[ServiceStatus], None]) -> StopReport:
        """Check, start, supervise, stop; the report of how it ended."""
        sup, home = self.settings.supervision, self.settings.home
        leftovers = stop_leftovers(home, timeout_s=sup.stop_timeout_s)
        assert self.port is not None and self.mqtt_port is not None  # noqa: S101  # post_init
        require_free_port(self.settings.api.host, self.port, what="HTTPS", option="--api-port")
        if self.settings.broker.kind == "mosquitto":  # RabbitMQ's nodes are the operator's
            require_free_port(
                self.settings.broker.host, self.mqtt_port, what="MQTT", option="--mqtt-port"
            )
        os.environ[HOME_ENV] = str(home)  # children inherit it: a later run can tell them
        rt = Runtime.open(self.settings)
        side = BrokerSide(rt, port=self.mqtt_port)
        supervisor = Supervisor(
            RestartPolicy.from_settings(sup),
            preload=CHILD_MODULES,
            stop_timeout_s=sup.stop_timeout_s,
            on_change=lambda kind, change, crash: _record_change(rt, kind, change, crash),
        )
        loop = RunLoop(self.settings, rt, side, supervisor, self._ready)
        children, broker_stopped = 0, False
        try:
            status = self._start(rt, side, supervisor, loop, leftovers)
            if status is not None:
                on_ready(status)
                loop.supervise(self.signals.event)
        finally:
            self.signals.event.set()
            children = supervisor.stop()
            broker_stopped = side.running
            side.stop()
            loop.close()
            rt.close()
        return self._report(children, broker_stopped)

    def _start(
        self,
        rt: Runtime,
        side: BrokerSide,
        supervisor: Supervisor,
        loop: RunLoop,
        leftovers: list[str],
    ) -> ServiceStatus | None:
        """Start the broker and the children; None if a signal came meanwhile."""
        assert self.port is not None and self.mqtt_port is not None  # noqa: S101  # post_init
        loop.start_threads(self.signals.event)
        if not side.start() and side.error is not None and side.error.code == "broker.port_in_use":
            raise side.error
        if self.signals.event.is_set():
            return None
        self._start_children(supervisor)
        loop.record()
        ingest_ready = side.running and _await_ingest(self._ready, stopping=self.signals.event)
        if self.signals.event.is_set():
            return None
        return ServiceStatus(
            api_port=self.port,
            mqtt_port=self.mqtt_port,
            broker_running=side.running,
            broker_error=side.error.one_line() if side.error else None,
            ingest_workers=len(self._ready),
            ingest_ready=ingest_ready,
            leftovers_stopped=tuple(leftovers),
            migrated=self.migrated,
        )

    def _start_children(self, supervisor: Supervisor) -> None:
        settings, home = self.settings, str(self.settings.home)
        for index in range(settings.broker.ingest_workers):
            event = supervisor.ctx.Event()
            self._ready.append(event)
            args = (home, self.mqtt_port, index, event)
            supervisor.start(ProcessSpec(f"ingest#{index}", ingest_process_main, args, ready=event))
        for index in range(self.workers or 1):
            supervisor.start(ProcessSpec(f"https#{index}", https_worker_main, (home, self.port)))
        supervisor.start(ProcessSpec("campaigns#0", ticker_process_main, (home, self.mqtt_port)))
        supervisor.start(ProcessSpec("audit#0", sequencer_process_main, (home,)))
        if settings.attestation.enabled and settings.broker.ingest_workers:  # ingest verifies
            supervisor.start(ProcessSpec("attest#0", attest_process_main, (home, self.mqtt_port)))
        if settings.monitoring.enabled:
            supervisor.start(ProcessSpec("monitor#0", monitor_process_main, (home,)))
        if settings.lwm2m.enabled:
            supervisor.start(ProcessSpec("lwm2m#0", lwm2m_process_main, (home,)))

    def _report(self, children: int, broker_stopped: bool) -> StopReport:
        received = self.signals.received
        name = signal.Signals(received).name if received is not None else None
        code = EXIT_INTERRUPTED if received == signal.SIGINT else 0
        return StopReport(
            signal=name, children_stopped=children, broker_stopped=broker_stopped, exit_code=code
        )


def _record_change(rt: Runtime, kind: str, change: str, crash: Crash | None) -> None:
    """A kind of worker became crash-looping or recovered: a security event (never raises)."""
    details = {"crashes_in_window": crash.crashes_in_window} if crash is not None else {}
    try:
        record_service_change(
            rt.uow,
            change="degraded" if change == "degraded" else "recovered",
            component=f"workers.{kind}",
            details={**details, "window_s": rt.settings.supervision.restart_window_s},
            now=datetime.now(UTC),
        )
    except TrustFleetError as exc:
        logger.warning("cannot record service.%s: %s", change, exc.one_line())


def _await_ingest(ready: list[Any], *, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + _INGEST_READY_TIMEOUT_S
    for event in ready:
        while not event.wait(timeout=0.1):
            if stopping.is_set():
                return False
            if time.monotonic() > deadline:
                logger.warning("ingest workers not subscribed after %s s", _INGEST_READY_TIMEOUT_S)
                return False
    return True
