"""The shapes of authentication (principal, session view, login step) and the steps every login
stage shares: opening the next session, the ``operator.login`` event, counting failures.

Private to :mod:`trustfleet.services.auth` and its second factors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from trustfleet import rbac
from trustfleet.audit.context import current_operator
from trustfleet.errors import PermissionDenied, Unauthenticated
from trustfleet.services import _throttle as throttle
from trustfleet.services._sessions import LiveSession, csrf_of, idle_deadline, live_session
from trustfleet.services._sessions import open_session as _open_session

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import OperatorRecord, SessionStage, Transaction

__all__ = [
    "LoginStep",
    "Principal",
    "SessionView",
    "first_stage",
    "login_event",
    "login_failed",
    "second_factor",
    "step_of",
    "view_of",
]

logger = logging.getLogger("trustfleet.services.auth")


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who makes a request, and with which role."""

    operator_id: int
    login: str
    role: str
    """A :mod:`trustfleet.rbac` role; a token's own role."""
    via: Literal["session", "token"]
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """The events' actor: ``operator:<login>`` (``… token:<id>`` for a token)."""
        if self.token_id is None:
            return f"operator:{self.login}"
        return f"operator:{self.login} token:{self.token_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    """A live console session as the console and the API see it."""

    principal: Principal
    stage: SessionStage
    csrf_token: str
    """HMAC-SHA256(key=session secret, b"trustfleet csrf v1"), base64url."""
    expires_at: datetime
    """The absolute timeout."""
    idle_expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginStep:
    """The result of a login step: the new cookie value and the session it names."""

    session_secret: str
    view: SessionView


def view_of(live: LiveSession, rt: Runtime) -> SessionView:
    """The :class:`SessionView` of a live session."""
    operator = live.operator
    return SessionView(
        principal=Principal(
            operator_id=operator.id, login=operator.login, role=operator.role, via="session"
        ),
        stage=live.session.stage,
        csrf_token=csrf_of(live.secret),
        expires_at=live.session.expires_at,
        idle_expires_at=idle_deadline(live.session, rt.settings.operators),
    )


def step_of(live: LiveSession, rt: Runtime) -> LoginStep:
    """The :class:`LoginStep` of a newly opened session."""
    return LoginStep(session_secret=live.secret, view=view_of(live, rt))


def first_stage(operator: OperatorRecord) -> SessionStage:
    """The stage after the password: a second factor if one is set up (or the role needs one)."""
    if operator.mfa_enabled:
        return "password"
    return "mfa-enroll" if operator.role in rbac.MFA_REQUIRED_ROLES else "full"


def login_event(
    tx: Transaction, login: str, *, outcome: str, details: dict[str, str], now: datetime,
    actor: str | None = None,
) -> None:  # fmt: skip
    """Append an ``operator.login`` event (never a password, code or secret); the actor is the
    session's operator for a second factor, else the caller's context."""
    shown = throttle.shown_login(login)
    if outcome != "ok":
        logger.warning("login refused for %r: %s", shown, details.get("reason"))
    tx.events.append(
        type="operator.login", actor=actor or current_operator(), subject=f"operator:{shown}",
        details=details, now=now, outcome=outcome,
    )  # fmt: skip


def login_failed() -> Unauthenticated:
    """The one error of every failed login step."""
    return Unauthenticated("login failed", code="auth.login")


def wrong_stage(stages: tuple[SessionStage, ...]) -> PermissionDenied:
    """The error for a step the session is not at."""
    return PermissionDenied(
        f"this step needs a session at stage {' or '.join(stages)}",
        hint="log in again",
        code="auth.stage",
    )


Attempt = Callable[["Transaction", LiveSession], str | None]
"""A second-factor check within the transaction: None when it passed, else the reason."""


def second_factor(
    rt: Runtime, session_secret: str, *, now: datetime, method: str,
    stages: tuple[SessionStage, ...], attempt: Attempt,
) -> LoginStep:  # fmt: skip
    """Run one second-factor step of a live session at one of ``stages``: throttled like a
    password (per login and per address), counted when it fails, and on success a new session
    at stage ``full`` replaces this one.

    Raises:
        Unauthenticated: The session is not live (code ``auth.session``), or the factor failed
            or is throttled ("login failed", code ``auth.login``).
        PermissionDenied: The session is at another stage (code ``auth.stage``).
    """
    settings = rt.settings.operators
    with rt.uow.begin() as tx:
        live = live_session(tx, session_secret, settings=settings, now=now)
        if live.session.stage not in stages:
            raise wrong_stage(stages)
        login = live.operator.login
        keys = throttle.keys_for(login, live.session.origin)
        reason = "locked" if throttle.locked_keys(tx, keys, now=now) else attempt(tx, live)
        if reason is None:
            tx.operators.clear_throttle(keys[0])
            tx.operators.update(login, now=now, last_login_at=now)
            full = _open_session(
                tx, live.operator, stage="full", origin=live.session.origin, now=now,
                settings=settings, previous=live.session, mfa_method=method,
            )  # fmt: skip
            details = {"stage": "full", "factor": method}
            login_event(
                tx, login, outcome="ok", details=details, now=now, actor=f"operator:{login}"
            )
            return step_of(full, rt)
        if reason != "locked":
            throttle.record_failure(tx, keys, settings=settings, now=now)
        details = {"reason": reason, "factor": method}
        login_event(
            tx, login, outcome="refused", details=details, now=now, actor=f"operator:{login}"
        )
    raise login_failed()  # after the commit: the failure is counted
