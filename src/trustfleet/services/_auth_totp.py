"""TOTP as a second factor: enrollment (a pending seed, confirmed by a first code) and the
login step. Re-exported by :mod:`trustfleet.services.auth`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from trustfleet.errors import Conflict
from trustfleet.services import _totp as totp
from trustfleet.services._auth_core import LoginStep, second_factor, wrong_stage
from trustfleet.services._sessions import LiveSession, live_session

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import SessionStage, Transaction

__all__ = ["begin_totp_enrollment", "confirm_totp_enrollment", "verify_totp"]

_ENROLL_STAGES: tuple[SessionStage, ...] = ("mfa-enroll", "full")


def _check_code(tx: Transaction, live: LiveSession, code: str, *, now: datetime) -> str | None:
    """None when ``code`` is a fresh code of the operator's seed (and marks its step used)."""
    creds = tx.operators.credentials(live.operator.login)
    if creds is None or creds.totp_secret is None:
        return "no totp"
    step = totp.matching_step(creds.totp_secret, code, now=now, after=creds.totp_last_step)
    if step is None:
        return "wrong code"
    if not tx.operators.use_totp_step(live.operator.id, step):
        return "code reused"
    return None


def verify_totp(rt: Runtime, session_secret: str, code: str, *, now: datetime) -> LoginStep:
    """The TOTP step of a login (session at stage ``password``): on success a new session at
    stage ``full``.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``), or the code is wrong,
            used already, or the login is throttled ("login failed", code ``auth.login``).
        PermissionDenied: The session is at another stage (code ``auth.stage``).
    """

    def attempt(tx: Transaction, live: LiveSession) -> str | None:
        if not live.operator.totp_enabled:
            return "no totp"
        return _check_code(tx, live, code, now=now)

    return second_factor(
        rt, session_secret, now=now, method="totp", stages=("password",), attempt=attempt
    )


def begin_totp_enrollment(rt: Runtime, session_secret: str, *, now: datetime) -> tuple[str, str]:
    """A new TOTP seed for the session's operator, pending until a code confirms it.

    Returns:
        The base32 seed and its ``otpauth://`` URI (for a QR code), to show once.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``).
        PermissionDenied: The session is at stage ``password`` (code ``auth.stage``).
        Conflict: TOTP is enrolled already (code ``operator.totp.enrolled``; reset MFA first).
    """
    with rt.uow.begin() as tx:
        live = live_session(tx, session_secret, settings=rt.settings.operators, now=now)
        if live.session.stage not in _ENROLL_STAGES:
            raise wrong_stage(_ENROLL_STAGES)
        if live.operator.totp_enabled:
            raise Conflict(
                "TOTP is enrolled already", hint="an admin may reset MFA",
                code="operator.totp.enrolled",
            )  # fmt: skip
        secret = totp.new_secret()
        tx.operators.update(
            live.operator.login, now=now, totp_secret=secret, totp_confirmed_at=None,
            totp_last_step=None,
        )  # fmt: skip
        issuer = rt.settings.pki.organization
        return secret, totp.provisioning_uri(secret, login=live.operator.login, issuer=issuer)


def confirm_totp_enrollment(
    rt: Runtime, session_secret: str, code: str, *, now: datetime
) -> LoginStep:
    """Confirm the pending seed with a code from the app: TOTP is enrolled and a new session at
    stage ``full`` replaces this one.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``), or the code is wrong
            or the login throttled ("login failed", code ``auth.login``).
        PermissionDenied: The session is at stage ``password`` (code ``auth.stage``).
    """

    def attempt(tx: Transaction, live: LiveSession) -> str | None:
        if live.operator.totp_enabled:
            return "totp enrolled already"
        reason = _check_code(tx, live, code, now=now)
        if reason is None:
            tx.operators.update(live.operator.login, now=now, totp_confirmed_at=now)
            tx.events.append(
                type="operator.totp_enrolled", actor=f"operator:{live.operator.login}",
                subject=f"operator:{live.operator.login}", details={}, now=now,
            )  # fmt: skip
        return reason

    return second_factor(
        rt, session_secret, now=now, method="totp", stages=_ENROLL_STAGES, attempt=attempt
    )
