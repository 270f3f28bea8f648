"""Authentication of operators: API tokens, password logins, console sessions, CSRF.

A console login goes through stages (:class:`SessionView` ``stage``): ``password`` (the password
was right, a second factor is set up and must be given), ``mfa-enroll`` (the role needs a second
factor and none is set up) and ``full``. Each stage change gives a new session secret. Every
failure of a login looks the same to the caller ("login failed", code ``auth.login``): an
unknown login, a wrong password, a disabled account and a throttled one; the reason goes only
to the server log and the ``operator.login`` event. The second factors (TOTP, passkeys) are in
:mod:`trustfleet.services._auth_mfa` and re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from trustfleet import rbac
from trustfleet.audit.context import current_operator
from trustfleet.errors import PermissionDenied, Unauthenticated
from trustfleet.services import _passwords as passwords
from trustfleet.services import _throttle as throttle
from trustfleet.services._sessions import LiveSession, csrf_of, idle_deadline, live_session
from trustfleet.services._sessions import open_session as _open_session
from trustfleet.services.api_tokens import parse_token

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import OperatorRecord, SessionStage, Transaction

__all__ = [
    "LoginStep",
    "Principal",
    "SessionView",
    "authenticate_token",
    "check_csrf",
    "login_password",
    "logout",
    "session_view",
]

logger = logging.getLogger(__name__)


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


_INVALID_TOKEN = "invalid or expired credentials"  # noqa: S105  # a message


def authenticate_token(rt: Runtime, presented: str, *, now: datetime) -> Principal:
    """The principal of an API token ``tf_<id>_<secret>``; records its use.

    Raises:
        Unauthenticated: Malformed, unknown, wrong secret, expired, revoked, or its owner is
            disabled: all alike (code ``auth.unauthenticated``).
    """
    parsed = parse_token(presented)
    with rt.uow.begin() as tx:
        stored = None if parsed is None else tx.operators.stored_token(parsed[0])
        if parsed is None or stored is None:
            raise Unauthenticated(_INVALID_TOKEN, code="auth.unauthenticated")
        digest = hashlib.sha256(parsed[1].encode("ascii")).hexdigest()
        token = stored.token
        owner = tx.operators.get_by_id(token.operator_id)
        if (
            not hmac.compare_digest(digest, stored.secret_sha256)
            or token.revoked_at is not None
            or now >= token.expires_at
            or owner is None
            or owner.disabled
        ):
            raise Unauthenticated(_INVALID_TOKEN, code="auth.unauthenticated")
        tx.operators.touch_token(token.id, now=now)
        return Principal(
            operator_id=owner.id, login=owner.login, role=token.role, via="token",
            token_id=token.id,
        )  # fmt: skip


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


def session_view(rt: Runtime, session_secret: str, *, now: datetime) -> SessionView:
    """The live session named by a cookie; refreshes its idle timeout.

    A session not yet at stage ``full`` is returned too: the caller decides what it may do.

    Raises:
        Unauthenticated: Unknown, ended, idle- or absolute-expired, or its operator disabled
            (code ``auth.session``).
    """
    with rt.uow.begin() as tx:
        live = live_session(tx, session_secret, settings=rt.settings.operators, now=now)
        tx.operators.update_session(live.session.id_sha256, last_seen_at=now)
        refreshed = tx.operators.session_by_hash(live.session.id_sha256)
        if refreshed is not None:
            live = LiveSession(secret=live.secret, session=refreshed, operator=live.operator)
        return view_of(live, rt)


def check_csrf(view: SessionView, presented: str | None) -> None:
    """Check the CSRF token a form or an ``X-CSRF-Token`` header carried.

    Raises:
        PermissionDenied: It is missing or wrong (code ``auth.csrf``).
    """
    if presented is None or not hmac.compare_digest(
        view.csrf_token.encode("ascii"), presented.encode("utf-8", "surrogatepass")
    ):
        raise PermissionDenied(
            "the request carries no valid CSRF token",
            hint="reload the page and try again",
            code="auth.csrf",
        )


def first_stage(operator: OperatorRecord) -> SessionStage:
    """The stage after the password: a second factor if one is set up (or the role needs one)."""
    if operator.mfa_enabled:
        return "password"
    return "mfa-enroll" if operator.role in rbac.MFA_REQUIRED_ROLES else "full"


def login_event(
    tx: Transaction, login: str, *, outcome: str, details: dict[str, str], now: datetime
) -> None:
    """Append an ``operator.login`` event (never a password, code or secret)."""
    if outcome != "ok":
        logger.warning("login refused for %r: %s", login[:64], details.get("reason"))
    tx.events.append(
        type="operator.login", actor=current_operator(), subject=f"operator:{login[:64]}",
        details=details, now=now, outcome=outcome,
    )  # fmt: skip


def login_failed() -> Unauthenticated:
    """The one error of every failed login."""
    return Unauthenticated("login failed", code="auth.login")


def login_password(
    rt: Runtime, *, login: str, password: str, origin: str, now: datetime
) -> LoginStep:
    """Check a login and password; open a session at the first stage.

    Raises:
        Unauthenticated: "login failed" (code ``auth.login``) for an unknown login, a wrong
            password, a disabled account, or a throttled login or address.
    """
    settings = rt.settings.operators
    keys = throttle.keys_for(login, origin)
    with rt.uow.begin() as tx:
        locked = throttle.locked_keys(tx, keys, now=now)
        creds = None if len(login) > 64 else tx.operators.credentials(login)
        if locked or creds is None:
            passwords.dummy_verify(settings)
            right = False
        else:
            right = passwords.verify_password(settings, creds.password_hash, password)
        reason = (
            "locked" if locked else
            "unknown login" if creds is None else
            "wrong password" if not right else
            "disabled" if creds.operator.disabled else None
        )  # fmt: skip
        if reason is not None or creds is None:
            if not locked:
                throttle.record_failure(tx, keys, settings=settings, now=now)
            login_event(tx, login, outcome="refused", details={"reason": str(reason)}, now=now)
            step = None
        else:
            tx.operators.clear_throttle(keys[0])
            changes: dict[str, object] = {"last_login_at": now}
            if passwords.needs_rehash(settings, creds.password_hash):
                changes["password_hash"] = passwords.hash_password(settings, password)
            operator = tx.operators.update(login, now=now, **changes)
            stage = first_stage(operator)
            live = _open_session(
                tx, operator, stage=stage, origin=origin, now=now, settings=settings
            )
            login_event(
                tx, login, outcome="ok", details={"stage": stage, "factor": "password"}, now=now
            )
            step = step_of(live, rt)
    if step is None:
        raise login_failed()  # after the commit: the failure is counted
    return step


def logout(rt: Runtime, session_secret: str, *, now: datetime) -> None:
    """End a session server-side (nothing happens for one already ended or unknown)."""
    with rt.uow.begin() as tx:
        try:
            live = live_session(tx, session_secret, settings=rt.settings.operators, now=now)
        except Unauthenticated:
            return
        tx.operators.update_session(live.session.id_sha256, ended_at=now)
        tx.events.append(
            type="operator.logout", actor=f"operator:{live.operator.login}",
            subject=f"operator:{live.operator.login}", details={}, now=now,
        )  # fmt: skip
