"""Console sessions: secrets, their hashes, the CSRF token derived from them, stage changes.

A session secret is 256 random bits (``secrets.token_urlsafe(32)``), the cookie value; the store
holds only its SHA-256. The CSRF token is HMAC-SHA256 keyed with the secret over a fixed label,
so it needs no storage and differs per session. Each stage change opens a new session (a new
secret: no fixation) and ends the old one; the absolute timeout stays that of the login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from trustfleet.errors import Unauthenticated
from trustfleet.services._throttle import printable

if TYPE_CHECKING:
    from trustfleet.settings.sections import OperatorSettings
    from trustfleet.store import OperatorRecord, SessionRecord, SessionStage, Transaction

__all__ = [
    "CSRF_LABEL",
    "LiveSession",
    "csrf_of",
    "idle_deadline",
    "live_session",
    "open_session",
    "session_hash",
]

CSRF_LABEL: Final = b"trustfleet csrf v1"
_MAX_SECRET_CHARS: Final = 128


def session_hash(secret: str) -> str:
    """The SHA-256 (hex) under which a session secret is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_of(secret: str) -> str:
    """The CSRF token of a session: HMAC-SHA256(key=secret, CSRF_LABEL), base64url unpadded."""
    mac = hmac.new(secret.encode("utf-8", "surrogatepass"), CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def idle_deadline(session: SessionRecord, settings: OperatorSettings) -> datetime:
    """When a session ends without another request."""
    return session.last_seen_at + timedelta(seconds=settings.session_idle_s)


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A live session, its operator, and the secret that names it."""

    secret: str
    session: SessionRecord
    operator: OperatorRecord


def _expired() -> Unauthenticated:
    return Unauthenticated(
        "the session is unknown, ended or expired",
        hint="log in again",
        code="auth.session",
    )


def live_session(
    tx: Transaction, secret: str, *, settings: OperatorSettings, now: datetime
) -> LiveSession:
    """The live session named by ``secret`` (its idle timeout not refreshed).

    Raises:
        Unauthenticated: Unknown, ended, idle or absolute timeout passed, or the operator is
            disabled (code ``auth.session``).
    """
    if not secret or len(secret) > _MAX_SECRET_CHARS:
        raise _expired()
    session = tx.operators.session_by_hash(session_hash(secret))
    if (
        session is None
        or session.ended_at is not None
        or now >= session.expires_at
        or now >= idle_deadline(session, settings)
    ):
        raise _expired()
    operator = tx.operators.get_by_id(session.operator_id)
    if operator is None or operator.disabled:
        raise _expired()
    return LiveSession(secret=secret, session=session, operator=operator)


def open_session(
    tx: Transaction,
    operator: OperatorRecord,
    *,
    stage: SessionStage,
    origin: str,
    now: datetime,
    settings: OperatorSettings,
    previous: SessionRecord | None = None,
    mfa_method: str | None = None,
) -> LiveSession:
    """Open a session at ``stage``; a ``previous`` one (a stage change) is ended and its
    absolute timeout kept."""
    if previous is not None:
        tx.operators.update_session(previous.id_sha256, ended_at=now)
        expires_at = previous.expires_at
    else:
        expires_at = now + timedelta(seconds=settings.session_absolute_s)
    secret = secrets.token_urlsafe(32)
    session = tx.operators.add_session(
        id_sha256=session_hash(secret),
        operator_id=operator.id,
        stage=stage,
        csrf_sha256=hashlib.sha256(csrf_of(secret).encode("ascii")).hexdigest(),
        mfa_method=mfa_method,
        origin=printable(origin) or "-",
        now=now,
        expires_at=expires_at,
    )
    return LiveSession(secret=secret, session=session, operator=operator)
