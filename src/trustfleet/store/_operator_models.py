"""ORM rows of the operator plane (migration 0008): operators, passkeys, API tokens, browser
sessions, login throttling, and the commands sent to devices with their results.

Private to :mod:`trustfleet.store`. No secret is stored in the clear: passwords as argon2id
hashes, API tokens and session ids as SHA-256 of 256-bit random values. The TOTP seed is the
one shared secret (RFC 6238 needs it to compute codes); it is readable only by whoever can read
the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from trustfleet.store._models import Base, _check_one_of
from trustfleet.store._types import UTCDateTime

__all__ = [
    "COMMAND_STATES",
    "OPERATOR_ROLE_VALUES",
    "SESSION_STAGES",
    "ApiTokenRow",
    "DeviceCommandRow",
    "LoginThrottleRow",
    "OperatorRow",
    "OperatorSessionRow",
    "PasskeyRow",
]

OPERATOR_ROLE_VALUES: tuple[str, ...] = (
    "admin", "security-officer", "release-manager", "fleet-operator", "factory", "auditor",
    "metrics",
)  # fmt: skip
"""Every role a row may hold (``trustfleet.rbac.ROLES``; a test keeps the two equal)."""

SESSION_STAGES: tuple[str, ...] = ("password", "mfa-enroll", "full")
"""A session after the password only, after the password of an operator who must still enroll
TOTP, and after the second factor (or a role that needs none)."""

COMMAND_STATES: tuple[str, ...] = ("sent", "answered", "failed")


class OperatorRow(Base):
    """Table ``operators``: local operator accounts."""

    __tablename__ = "operators"
    __table_args__ = (_check_one_of("role", OPERATOR_ROLE_VALUES),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256))
    must_change_password: Mapped[bool] = mapped_column(Boolean)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(Integer)  # a code is used once
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PasskeyRow(Base):
    """Table ``operator_passkeys``: WebAuthn credentials of operators."""

    __tablename__ = "operator_passkeys"
    __table_args__ = (Index(None, "operator_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[int] = mapped_column(Integer, ForeignKey("operators.id"))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiTokenRow(Base):
    """Table ``api_tokens``: tokens for automation, stored as the SHA-256 of their secret."""

    __tablename__ = "api_tokens"
    __table_args__ = (_check_one_of("role", OPERATOR_ROLE_VALUES), Index(None, "operator_id"))

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # public, in the token
    operator_id: Mapped[int] = mapped_column(Integer, ForeignKey("operators.id"))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OperatorSessionRow(Base):
    """Table ``operator_sessions``: browser sessions, ended server-side."""

    __tablename__ = "operator_sessions"
    __table_args__ = (_check_one_of("stage", SESSION_STAGES), Index(None, "operator_id"))

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(Integer, ForeignKey("operators.id"))
    stage: Mapped[str] = mapped_column(String(16))
    csrf_sha256: Mapped[str] = mapped_column(String(64))
    mfa_method: Mapped[str | None] = mapped_column(String(16))  # "totp" or "passkey"
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary)  # a pending WebAuthn challenge
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the absolute timeout
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    origin: Mapped[str] = mapped_column(String(256))


class LoginThrottleRow(Base):
    """Table ``login_throttle``: failed logins per key (``login:<name>``, ``addr:<ip>``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeviceCommandRow(Base):
    """Table ``device_commands``: commands sent to devices and the results they sent back."""

    __tablename__ = "device_commands"
    __table_args__ = (
        _check_one_of("state", COMMAND_STATES),
        Index(None, "device_id", "sent_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the command id on the wire
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ok: Mapped[bool | None] = mapped_column(Boolean)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
