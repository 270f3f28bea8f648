"""ORM rows of the LwM2M tables (migration 0011). Private to :mod:`trustfleet.store`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from trustfleet.store._models import Base, _check_one_of
from trustfleet.store._types import UTCDateTime
from trustfleet.store.lwm2m_records import LWM2M_MODES, LWM2M_PURPOSES

__all__ = ["Lwm2mCredentialRow", "Lwm2mManifestRow", "Lwm2mRegistrationRow"]


class Lwm2mCredentialRow(Base):
    """Table ``lwm2m_credentials``."""

    __tablename__ = "lwm2m_credentials"
    __table_args__ = (_check_one_of("purpose", LWM2M_PURPOSES), Index(None, "device_id"))

    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(64))


class Lwm2mRegistrationRow(Base):
    """Table ``lwm2m_registrations``."""

    __tablename__ = "lwm2m_registrations"
    __table_args__ = (_check_one_of("mode", LWM2M_MODES),)

    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64))
    lifetime_s: Mapped[int] = mapped_column(Integer)
    binding: Mapped[str] = mapped_column(String(8))
    lwm2m_version: Mapped[str] = mapped_column(String(8))
    objects: Mapped[list[str]] = mapped_column(JSON)
    address: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(16))
    firmware_state: Mapped[int | None] = mapped_column(Integer)
    firmware_result: Mapped[int | None] = mapped_column(Integer)
    firmware_version: Mapped[str | None] = mapped_column(String(32))


class Lwm2mManifestRow(Base):
    """Table ``lwm2m_manifests``."""

    __tablename__ = "lwm2m_manifests"
    __table_args__ = (UniqueConstraint("model", "sequence"),)

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
