"""The service's own health in the security event log: a degraded or recovered component.

``server run`` calls :func:`record_service_change` when a kind of worker starts crash-looping
(``service.degraded``) and when it is stable again (``service.recovered``): an operator (and
an auditor) sees that part of the service was down, and for how long, in the same append-only
log as every device's events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from trustfleet.store import UnitOfWork
from trustfleet.store.records import JSON

__all__ = ["record_service_change"]


def record_service_change(
    uow: UnitOfWork,
    *,
    change: Literal["degraded", "recovered"],
    component: str,
    details: Mapping[str, JSON],
    now: datetime,
) -> None:
    """Append ``service.<change>`` about ``service:<component>`` (actor ``system``).

    Raises:
        InvalidInput: The component name or the details are malformed.
        Unavailable: The store cannot be written now.
    """
    with uow.begin() as tx:
        tx.events.append(
            type=f"service.{change}",
            actor="system",
            subject=f"service:{component}",
            details={"component": component, **details},
            now=now,
        )
