"""Unit of work: one database transaction and the repositories that act within it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from trustfleet.store._alerts import AlertActionRepository, AlertRepository
from trustfleet.store._attestation import AttestationRepository
from trustfleet.store._audit import AuditRepository
from trustfleet.store._campaigns import CampaignRepository
from trustfleet.store._certificates import CertificateRepository
from trustfleet.store._commands import CommandRepository
from trustfleet.store._crls import CrlRepository
from trustfleet.store._devices import DeviceRepository
from trustfleet.store._engine import _SQLITE_BEGIN_OPTION
from trustfleet.store._errors import translate
from trustfleet.store._events import MAX_EVENT_DETAILS_BYTES, EventRepository
from trustfleet.store._inventory import InventoryRepository
from trustfleet.store._lifecycle import (
    CaRepository,
    DecommissionRepository,
    ExpiryNoticeRepository,
)
from trustfleet.store._lwm2m import Lwm2mRepository
from trustfleet.store._metrics import MetricsRepository
from trustfleet.store._monitor_metrics import MonitorMetricsRepository
from trustfleet.store._notifications import NotificationRepository
from trustfleet.store._operators import OperatorRepository
from trustfleet.store._releases import ReleaseRepository
from trustfleet.store._session import SessionHandle
from trustfleet.store._telemetry import TelemetryRepository

__all__ = ["Transaction", "UnitOfWork"]


class Transaction:
    """The repositories of one open transaction; valid only inside its ``with`` block.

    Attributes:
        devices: Devices.
        certificates: Certificates.
        events: The append-only security event log.
        crls: Each issuer's current CRL.
        telemetry: Telemetry received over MQTT.
        releases: Published firmware releases.
        campaigns: Update campaigns and their devices.
        attestation: AKs, challenges, verdicts and device quarantine.
        audit: The audit log's Merkle tree: hash tiles, signed checkpoints, cosignatures.
        commands: Commands sent to devices and their results.
        inventory: The fleet inventory and its counts (read queries over devices).
        operators: Operators, passkeys, API tokens, console sessions, login throttling.
        metrics: Aggregates for ``/metrics``.
        monitor_metrics: Metrics windows of devices (monitoring) and the monitor's cursor.
        alerts: Security alerts (deduplicated findings) and their lifecycle.
        alert_actions: The actions playbooks asked for alerts.
        notifications: The outbox of webhooks and syslog messages.
        lwm2m: LwM2M credentials (ciphertext), registrations and firmware manifests.
    """

    def __init__(self, handle: SessionHandle, *, max_event_details_bytes: int) -> None:
        self.devices = DeviceRepository(handle)
        self.certificates = CertificateRepository(handle)
        self.events = EventRepository(handle, max_details_bytes=max_event_details_bytes)
        self.crls = CrlRepository(handle)
        self.telemetry = TelemetryRepository(handle)
        self.releases = ReleaseRepository(handle)
        self.campaigns = CampaignRepository(handle)
        self.attestation = AttestationRepository(handle)
        self.audit = AuditRepository(handle)
        self.commands = CommandRepository(handle)
        self.inventory = InventoryRepository(handle)
        self.operators = OperatorRepository(handle)
        self.metrics = MetricsRepository(handle)
        self.monitor_metrics = MonitorMetricsRepository(handle)
        self.alerts = AlertRepository(handle)
        self.alert_actions = AlertActionRepository(handle)
        self.notifications = NotificationRepository(handle)
        self.cas = CaRepository(handle)
        self.decommissions = DecommissionRepository(handle)
        self.expiry_notices = ExpiryNoticeRepository(handle)
        self.lwm2m = Lwm2mRepository(handle)


class UnitOfWork:
    """Starts transactions on one engine.

    ``with uow.begin() as tx:`` commits when the block ends normally and rolls back when it
    raises, so nothing is half-written. One transaction belongs to one thread; the
    ``UnitOfWork`` itself may be shared by threads.

    Args:
        engine: An engine from :func:`trustfleet.store.create_engine`, already migrated.
        max_event_details_bytes: Bound on the JSON size of one event's details.
    """

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        max_event_details_bytes: int = MAX_EVENT_DETAILS_BYTES,
    ) -> None:
        self._engine = engine
        # Reads take no write lock on SQLite (BEGIN DEFERRED: one WAL snapshot). On PostgreSQL
        # they run REPEATABLE READ, READ ONLY: every statement of the transaction sees the same
        # snapshot (under READ COMMITTED a commit between two reads could mix two states).
        if engine.dialect.name == "postgresql":
            self._read_engine = engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            self._read_engine = engine.execution_options(**{_SQLITE_BEGIN_OPTION: "DEFERRED"})
        self._max_event_details_bytes = max_event_details_bytes

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Transaction]:
        """Open a transaction.

        On SQLite a writing transaction takes the database's write lock at once (``BEGIN
        IMMEDIATE``), waiting up to the busy timeout for other writers; a ``read_only`` one
        takes no lock and sees one consistent snapshot (WAL on SQLite; REPEATABLE READ, READ
        ONLY on PostgreSQL). Use it only for reads: PostgreSQL refuses a write in it, and SQLite
        fails one once another writer holds the lock.

        Args:
            read_only: The transaction only reads.

        Yields:
            The transaction's repositories.

        Raises:
            Conflict: The commit broke a uniqueness or integrity rule.
            Unavailable: The database cannot be reached or stayed locked.
        """
        engine = self._read_engine if read_only else self._engine
        session = Session(engine, expire_on_commit=False)
        handle = SessionHandle(session)
        try:
            with session.begin():
                yield Transaction(handle, max_event_details_bytes=self._max_event_details_bytes)
        except sa_exc.SQLAlchemyError as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc
        finally:
            handle.close()
            session.close()
