"""Persistence of TrustFleet: SQLite (embedded default) or PostgreSQL, through SQLAlchemy.

Typical use::

    engine = create_engine(sqlite_url(path))
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        device = tx.devices.add(id="d1", model="m", now=now)
        tx.events.append(type="device.registered", actor="system", subject="device:d1",
                         details={}, now=now)

Repositories return frozen records (:mod:`trustfleet.store.records`); ORM rows never leave
this package. Database errors arrive as :class:`~trustfleet.errors.Conflict`,
:class:`~trustfleet.errors.NotFound` or :class:`~trustfleet.errors.Unavailable`.
"""

from trustfleet.store import (
    alert_records,
    command_records,
    lwm2m_records,
    operator_records,
    records,
)
from trustfleet.store._alerts import MAX_EVIDENCE_BYTES, AlertActionRepository, AlertRepository
from trustfleet.store._attestation import AttestationRepository
from trustfleet.store._audit import AuditRepository
from trustfleet.store._campaigns import CampaignRepository, NewCampaignDevice
from trustfleet.store._certificates import CertificateRepository
from trustfleet.store._commands import (
    MAX_COMMAND_RESULT_BYTES,
    CommandRepository,
    check_command_result,
)
from trustfleet.store._crls import CrlRepository
from trustfleet.store._devices import DeviceRepository
from trustfleet.store._engine import (
    create_engine,
    head_revision,
    migrate,
    schema_revision,
    sqlite_url,
)
from trustfleet.store._events import (
    MAX_EVENT_DETAILS_BYTES,
    OUTCOMES,
    EventRepository,
    entry_of,
)
from trustfleet.store._inventory import (
    ENROLLMENT_EVENT_TYPES,
    INVENTORY_ORDERS,
    FleetCounts,
    InventoryEntry,
    InventoryQuery,
    InventoryRepository,
)
from trustfleet.store._leadership import Leadership, role_holders
from trustfleet.store._lwm2m import Lwm2mRepository
from trustfleet.store._notifications import MAX_NOTIFICATION_BYTES, NotificationRepository
from trustfleet.store._operators import OperatorRepository
from trustfleet.store._releases import ReleaseRepository
from trustfleet.store._rows import record_of
from trustfleet.store._telemetry import (
    MAX_BOOT_CHARS,
    MAX_METRICS_BYTES,
    NewTelemetry,
    TelemetryRepository,
    check_metrics,
)
from trustfleet.store._uow import Transaction, UnitOfWork
from trustfleet.store._validate import MAX_LIST_LIMIT
from trustfleet.store.alert_records import *  # noqa: F403  # records of tx.alerts & co
from trustfleet.store.command_records import *  # noqa: F403  # public API (H2)
from trustfleet.store.lwm2m_records import *  # noqa: F403  # records of tx.lwm2m
from trustfleet.store.operator_records import *  # noqa: F403  # records of tx.operators
from trustfleet.store.records import *  # noqa: F403  # every record type is public API

__all__ = [
    "ENROLLMENT_EVENT_TYPES",
    "INVENTORY_ORDERS",
    "MAX_BOOT_CHARS",
    "MAX_COMMAND_RESULT_BYTES",
    "MAX_EVENT_DETAILS_BYTES",
    "MAX_LIST_LIMIT",
    "MAX_METRICS_BYTES",
    "OUTCOMES",
    "AttestationRepository",
    "AuditRepository",
    "CampaignRepository",
    "CertificateRepository",
    "CommandRepository",
    "CrlRepository",
    "DeviceRepository",
    "EventRepository",
    "FleetCounts",
    "InventoryEntry",
    "InventoryQuery",
    "InventoryRepository",
    "NewCampaignDevice",
    "NewTelemetry",
    "ReleaseRepository",
    "TelemetryRepository",
    "Transaction",
    "UnitOfWork",
    "check_command_result",
    "check_metrics",
    "create_engine",
    "entry_of",
    "migrate",
    "record_of",
    "sqlite_url",
]
__all__ += command_records.__all__
__all__ += records.__all__  # the record types and their value sets, stated once there
__all__ += ["OperatorRepository"]  # tx.operators
__all__ += operator_records.__all__  # its records
__all__ += ["MAX_EVIDENCE_BYTES", "MAX_NOTIFICATION_BYTES"]  # alerts and outbox bounds
__all__ += ["AlertActionRepository", "AlertRepository", "NotificationRepository"]
__all__ += alert_records.__all__
__all__ += ["head_revision", "schema_revision"]  # upgrades (services.upgrade)
__all__ += ["Lwm2mRepository"]  # tx.lwm2m
__all__ += lwm2m_records.__all__
__all__ += ["Leadership", "role_holders"]  # singletons across service hosts (ADR 0023)
