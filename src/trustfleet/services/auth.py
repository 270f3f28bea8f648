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
from datetime import datetime
from typing import TYPE_CHECKING

from trustfleet.errors import PermissionDenied, Unauthenticated
from trustfleet.services import _passwords as passwords
from trustfleet.services import _throttle as throttle
from trustfleet.services._auth_core import (
    LoginStep,
    Principal,
    SessionView,
    first_stage,
    login_event,
    login_failed,
    step_of,
    view_of,
)
from trustfleet.services._auth_passkeys import (
    finish_passkey_login,
    finish_passkey_registration,
    passkey_login_options,
    passkey_registration_options,
)
from trustfleet.services._auth_totp import (
    begin_totp_enrollment,
    confirm_totp_enrollment,
    verify_totp,
)
from trustfleet.services._sessions import LiveSession, live_session
from trustfleet.services._sessions import open_session as _open_session
from trustfleet.services.api_tokens import may_mint, parse_token

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import OperatorCredentials, Transaction

__all__ = [
    "LoginStep",
    "Principal",
    "SessionView",
    "authenticate_token",
    "begin_totp_enrollment",
    "check_csrf",
    "confirm_totp_enrollment",
    "finish_passkey_login",
    "finish_passkey_registration",
    "login_password",
    "logout",
    "passkey_login_options",
    "passkey_registration_options",
    "session_view",
    "verify_totp",
]

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
            or not may_mint(owner.role, token.role)  # the owner's role was lowered since
        ):
            raise Unauthenticated(_INVALID_TOKEN, code="auth.unauthenticated")
        tx.operators.touch_token(token.id, now=now)
        return Principal(
            operator_id=owner.id, login=owner.login, role=token.role, via="token",
            token_id=token.id,
        )  # fmt: skip


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


def login_password(
    rt: Runtime, *, login: str, password: str, origin: str, now: datetime
) -> LoginStep:
    """Check a login and password; open a session at the first stage.

    Every failure is counted (per login and per client address) and committed before the error
    is raised; while a key is locked even the right password fails.

    Raises:
        Unauthenticated: "login failed" (code ``auth.login``) for an unknown login, a wrong
            password, a disabled account, or a throttled login or address.
    """
    settings = rt.settings.operators
    keys = throttle.keys_for(login, origin)
    with rt.uow.begin(read_only=True) as tx:  # argon2 runs outside the write lock
        locked = bool(throttle.locked_keys(tx, keys, now=now))
        well_formed = throttle.LOGIN_PATTERN.fullmatch(login) is not None
        creds = tx.operators.credentials(login) if well_formed else None
    reason = _password_refusal(rt, creds, password, locked=locked)
    rehashed = None
    if (
        reason is None
        and creds is not None
        and passwords.needs_rehash(settings, creds.password_hash)
    ):
        rehashed = passwords.hash_password(settings, password)
    with rt.uow.begin() as tx:
        if reason is None and throttle.locked_keys(tx, keys, now=now):
            reason = "locked"  # by failures that came in meanwhile
        if reason is None and creds is not None:
            tx.operators.clear_throttle(keys[0])
            return _open_first(rt, tx, creds, rehashed=rehashed, origin=origin, now=now)
        if reason != "locked":
            throttle.record_failure(tx, keys, settings=settings, now=now)
        login_event(tx, login, outcome="refused", details={"reason": str(reason)}, now=now)
    raise login_failed()  # after the commit: the failure is counted


def _password_refusal(
    rt: Runtime, creds: OperatorCredentials | None, password: str, *, locked: bool
) -> str | None:
    """Why a password login fails (None: it succeeds); one argon2 verification in every case."""
    settings = rt.settings.operators
    if locked or creds is None:
        passwords.dummy_verify(settings)
        return "locked" if locked else "unknown login"
    if not passwords.verify_password(settings, creds.password_hash, password):
        return "wrong password"
    return "disabled" if creds.operator.disabled else None


def _open_first(
    rt: Runtime, tx: Transaction, creds: OperatorCredentials, *, rehashed: str | None,
    origin: str, now: datetime,
) -> LoginStep:  # fmt: skip
    settings = rt.settings.operators
    login = creds.operator.login
    changes: dict[str, object] = {"last_login_at": now}
    if rehashed is not None:  # made with the current [operators] argon2 parameters
        changes["password_hash"] = rehashed
    operator = tx.operators.update(login, now=now, **changes)
    stage = first_stage(operator)
    live = _open_session(tx, operator, stage=stage, origin=origin, now=now, settings=settings)
    login_event(tx, login, outcome="ok", details={"stage": stage, "factor": "password"}, now=now)
    return step_of(live, rt)


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
