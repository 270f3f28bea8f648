"""ORM rows of the lifecycle (migration 0010): the CA registry, decommissions, expiry notices.

Private to :mod:`trustfleet.store`. Records returned to services are frozen dataclasses, never
these rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from trustfleet.store._models import Base, _check_one_of
from trustfleet.store._types import UTCDateTime
from trustfleet.store.lifecycle_records import (
    CA_KIND_VALUES,
    CA_STATE_VALUES,
    DECOMMISSION_STATE_VALUES,
    EXPIRY_LEVEL_VALUES,
)

__all__ = ["CaRow", "DecommissionRow", "ExpiryNoticeRow"]


class CaRow(Base):
    """Table ``certificate_authorities``: every CA of the home and its state."""

    __tablename__ = "certificate_authorities"
    __table_args__ = (
        _check_one_of("kind", CA_KIND_VALUES),
        _check_one_of("state", CA_STATE_VALUES),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DecommissionRow(Base):
    """Table ``decommissions``: a device asked to wipe itself, and the outcome."""

    __tablename__ = "decommissions"
    __table_args__ = (
        _check_one_of("state", DECOMMISSION_STATE_VALUES),
        Index(None, "state", "deadline"),
    )

    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(300))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ExpiryNoticeRow(Base):
    """Table ``expiry_notices``: the last expiry warning raised per subject."""

    __tablename__ = "expiry_notices"
    __table_args__ = (_check_one_of("level", EXPIRY_LEVEL_VALUES),)

    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(16))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
