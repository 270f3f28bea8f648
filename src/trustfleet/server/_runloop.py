"""The parent's periodic work in ``server run``: supervision, broker sync, records, readiness.

Every tick (:data:`TICK_S`) it lets the supervisor restart dead children, lets the broker side
apply revocations and quarantines, reloads rotated TLS files (``_tls_watch``), keeps
``HOME/run/children.json`` current, and every ``[supervision] status_interval_s`` writes the
status file behind ``/readyz``.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from trustfleet.errors import NotFound, TrustFleetError
from trustfleet.server._broker_side import BrokerSide
from trustfleet.server._leading import lead
from trustfleet.server._leftovers import ChildRecord, run_dir
from trustfleet.server._readiness import STATUS_FILE, Component, write_status
from trustfleet.server._supervise import Supervisor
from trustfleet.server._tls_watch import TlsWatch
from trustfleet.services.decommission import sweep as sweep_decommissions
from trustfleet.services.expiry import watch_expiries
from trustfleet.services.ota import refresh_timestamp_if_due
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings

__all__ = ["RunLoop"]

logger = logging.getLogger(__name__)

TICK_S: Final = 0.1
_TIMESTAMP_JOIN_S: Final = 10.0
_ADMIN_CONNECT_S: Final = 0.5
_ADMIN_PROBE_S: Final = 30.0


class RunLoop:
    """The parent's periodic work: supervision, broker sync, children record, status file."""

    def __init__(
        self,
        settings: ServerSettings,
        rt: Runtime,
        side: BrokerSide,
        supervisor: Supervisor,
        ready: list[Any],
    ) -> None:
        self.settings, self.rt, self.side, self.supervisor = settings, rt, side, supervisor
        self.ready = ready
        self.record_file = ChildRecord(settings.home)
        self.status_path = run_dir(settings.home) / STATUS_FILE
        self._admin = _AdminProbe(side.config.paths.admin_socket)
        self.tls = TlsWatch(settings, side, supervisor)
        self._timestamps: threading.Thread | None = None
        self._decommissions: threading.Thread | None = None
        self._expiries: threading.Thread | None = None

    def start_threads(self, stopping: threading.Event) -> None:
        """Start the TUF timestamp refresh, the decommission sweep and the expiry watch (daemon
        threads, each running while this host leads its role: ``_leading.lead``)."""

        rt, check_s = self.rt, self.settings.supervision.leader_check_s

        def leading(
            role: str, loop: Callable[[Runtime, threading.Event], None]
        ) -> threading.Thread:
            thread = threading.Thread(
                target=lead,
                args=(rt.engine, role, lambda term: loop(rt, term), stopping),
                kwargs={"check_s": check_s},
                name=role,
                daemon=True,
            )
            thread.start()
            return thread

        self._timestamps = leading("tuf-timestamp", _refresh_timestamp_forever)
        # Wipe evidence revokes and signs CRLs: this process logs in through python-pkcs11.
        self._decommissions = leading("decommissions", _sweep_decommissions_forever)
        self._expiries = leading("expiry-watch", _watch_expiries_forever)

    def supervise(self, stopping: threading.Event) -> None:
        next_status = 0.0
        while not stopping.wait(TICK_S):
            self.supervisor.check()
            self.side.tick()
            self.tls.tick()
            self.record()
            if time.monotonic() >= next_status:
                self.write_status()
                next_status = time.monotonic() + self.settings.supervision.status_interval_s
        logger.info(
            "stopping (children %s, mosquitto %s)", self.supervisor.pids, self.side.broker.pid
        )

    def record(self) -> None:
        pid = self.side.broker.pid
        mosquitto = [("mosquitto", pid)] if pid is not None else []
        try:
            self.record_file.update(self.supervisor.children() + mosquitto)
        except OSError as exc:
            logger.warning("cannot record the children: %s", exc)

    def write_status(self) -> None:
        try:
            write_status(self.status_path, self.components(), now=time.time(), pid=os.getpid())
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.status_path, exc)

    def components(self) -> list[Component]:
        """Each component as the parent sees it now."""
        side = self.side
        broker_detail = side.error.one_line() if side.error else ""
        if side.broker.failure is not None:
            broker_detail = side.broker.failure.one_line()
        found = [
            self._store(),
            Component("broker", side.running, broker_detail),
            Component("broker.admin", side.running, "RabbitMQ management API")
            if side.external
            else self._admin(),
        ]
        if self.ready:
            subscribed = sum(1 for event in self.ready if event.is_set())
            found.append(
                Component(
                    "ingest.subscribed",
                    subscribed == len(self.ready) and side.running,
                    f"{subscribed}/{len(self.ready)} subscribed",
                )
            )
        for kind in self.supervisor.health():
            detail = f"{kind.alive}/{kind.total} running, {kind.restarts} restart(s)"
            if kind.crashlooping:
                detail += ", crash-looping"
            found.append(Component(f"workers.{kind.kind}", kind.up, detail))
        return found

    def _store(self) -> Component:
        try:
            with self.rt.uow.begin(read_only=True) as tx:
                tx.events.last_id()
        except TrustFleetError as exc:
            return Component("store", False, exc.one_line())
        return Component("store", True)

    def close(self) -> None:
        for thread in (self._timestamps, self._decommissions, self._expiries):
            if thread is not None and thread.is_alive():
                thread.join(timeout=_TIMESTAMP_JOIN_S)
        self.status_path.unlink(missing_ok=True)
        self.record_file.clear()


class _AdminProbe:
    """Whether the broker's admin socket accepts, without a connection every status write.

    Each connection is two lines in Mosquitto's log, so the socket file is checked every time
    (gone, not a socket, or replaced by another broker's) and connected to only when it
    changed or every ``_ADMIN_PROBE_S``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._next = 0.0

    def __call__(self) -> Component:
        try:
            st = self.path.stat()
        except OSError as exc:
            return self._down(exc)
        if not stat.S_ISSOCK(st.st_mode):
            return self._down(None, "not a socket")
        if st.st_ino == self._inode and time.monotonic() < self._next:
            return Component("broker.admin", True)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_ADMIN_CONNECT_S)
                sock.connect(str(self.path))
        except OSError as exc:
            return self._down(exc)
        self._inode, self._next = st.st_ino, time.monotonic() + _ADMIN_PROBE_S
        return Component("broker.admin", True)

    def _down(self, exc: OSError | None, why: str = "") -> Component:
        self._inode = None
        reason = why or (exc.strerror if exc is not None and exc.strerror else str(exc))
        return Component("broker.admin", False, f"{self.path.name}: {reason}")


def _refresh_timestamp_forever(rt: Runtime, stopping: threading.Event) -> None:
    """Re-sign the TUF timestamp before it expires ([ota] timestamp_check_s); never raises."""
    while True:
        try:
            refresh_timestamp_if_due(rt, now=datetime.now(UTC))
        except NotFound as exc:
            logger.debug("no TUF timestamp to refresh: %s", exc.one_line())
        except TrustFleetError as exc:
            logger.warning("TUF timestamp refresh failed: %s", exc.one_line())
        except Exception:
            logger.exception("TUF timestamp refresh failed")
        if stopping.wait(rt.settings.ota.timestamp_check_s):
            return


def _sweep_decommissions_forever(rt: Runtime, stopping: threading.Event) -> None:
    """Check wipe evidence and expire overdue decommissions ([lifecycle] decommission_poll_s)."""
    while not stopping.wait(rt.settings.lifecycle.decommission_poll_s):
        try:
            outcome = sweep_decommissions(rt, now=datetime.now(UTC))
        except TrustFleetError as exc:
            logger.warning("decommission sweep failed: %s", exc.one_line())
            continue
        except Exception:
            logger.exception("decommission sweep failed")
            continue
        if outcome.verified or outcome.expired:
            logger.info("decommissioned: verified %s, unverified %s",
                        list(outcome.verified), list(outcome.expired))  # fmt: skip


def _watch_expiries_forever(rt: Runtime, stopping: threading.Event) -> None:
    """Raise expiry notices every ``[lifecycle] expiry_check_s`` (docs/lifecycle.md); never
    raises."""
    while True:
        try:
            watch_expiries(rt, now=datetime.now(UTC))
        except TrustFleetError as exc:
            logger.warning("expiry watch failed: %s", exc.one_line())
        except Exception:
            logger.exception("expiry watch failed")
        if stopping.wait(rt.settings.lifecycle.expiry_check_s):
            return
