"""Operator accounts: add, list, disable and enable, reset MFA, change role and password.

Every change appends a security event (``operator.*``) in the same transaction, with the
acting operator (:func:`~trustfleet.audit.context.current_operator`) as its actor. Disabling an
operator or resetting its MFA ends its sessions; disabling also revokes its API tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from trustfleet import rbac
from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict, InvalidInput, Unauthenticated
from trustfleet.services import _passwords as passwords
from trustfleet.services import _throttle as throttle
from trustfleet.services._throttle import LOGIN_PATTERN
from trustfleet.services.queries import Page, parse_cursor
from trustfleet.services.queries import _page as page_of  # one way to page

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings.sections import OperatorSettings
    from trustfleet.store import JSON, OperatorRecord, Transaction, UnitOfWork

__all__ = [
    "FIRST_ADMIN",
    "LOGIN_PATTERN",
    "add_first_admin",
    "add_operator",
    "change_password",
    "check_login",
    "check_operator_role",
    "disable_operator",
    "enable_operator",
    "get_operator",
    "list_operators",
    "reset_mfa",
    "set_role",
]

FIRST_ADMIN: Final = "admin"
"""The operator ``server init`` creates."""


def check_login(login: str) -> str:
    """``login`` if it is well formed.

    Raises:
        InvalidInput: It is not (code ``operator.login.invalid``).
    """
    if not LOGIN_PATTERN.fullmatch(login):
        raise InvalidInput(
            f"{login[:64]!r} is not a login",
            hint="1 to 64 characters: a lower case letter, then a-z, 0-9, '.', '_', '-'",
            code="operator.login.invalid",
        )
    return login


def check_operator_role(role: str) -> str:
    """``role`` if an operator may hold it (not a token-only role such as ``metrics``).

    Raises:
        InvalidInput: It is unknown or token-only (code ``operator.role.invalid``).
    """
    if role not in rbac.OPERATOR_ROLES:
        raise InvalidInput(
            f"{role[:40]!r} is not an operator role",
            hint=f"roles: {', '.join(rbac.OPERATOR_ROLES)}",
            code="operator.role.invalid",
        )
    return role


def _event(
    tx: Transaction, type: str, login: str, *, now: datetime, details: dict[str, JSON] | None = None
) -> None:
    tx.events.append(
        type=type, actor=current_operator(), subject=f"operator:{login}", details=details or {},
        now=now,
    )  # fmt: skip


def add_operator(
    rt: Runtime, *, login: str, role: str, password: str | None, now: datetime
) -> tuple[OperatorRecord, str | None]:
    """Add an operator; without a password a one-time password is generated and returned (the
    operator must change it at first login).

    Raises:
        InvalidInput: A bad login, role or password.
        Conflict: The login is taken.
    """
    one_time = passwords.generate_password() if password is None else None
    record = _add(
        rt.uow, rt.settings.operators, login=login, role=role,
        password=password if password is not None else str(one_time),
        must_change_password=password is None, now=now,
    )  # fmt: skip
    return record, one_time


def add_first_admin(
    uow: UnitOfWork, settings: OperatorSettings, *, password: str, now: datetime
) -> OperatorRecord:
    """The first operator of a new home, :data:`FIRST_ADMIN` (role ``admin``); it must change
    its password at the first login.

    Raises:
        InvalidInput: The password is too short or too long.
    """
    return _add(
        uow, settings, login=FIRST_ADMIN, role="admin", password=password,
        must_change_password=True, now=now,
    )  # fmt: skip


def _add(
    uow: UnitOfWork, settings: OperatorSettings, *, login: str, role: str, password: str,
    must_change_password: bool, now: datetime,
) -> OperatorRecord:  # fmt: skip
    check_login(login)
    check_operator_role(role)
    password_hash = passwords.hash_password(settings, passwords.check_new_password(password))
    with uow.begin() as tx:
        record = tx.operators.add(
            login=login, role=role, password_hash=password_hash,
            must_change_password=must_change_password, now=now,
        )  # fmt: skip
        _event(tx, "operator.added", login, now=now, details={"role": role})
    return record


def list_operators(rt: Runtime, *, limit: int, cursor: str | None = None) -> Page[OperatorRecord]:
    """A page of operators ordered by login.

    Raises:
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        return page_of(
            tx, lambda t, n, o: t.operators.list(limit=n, offset=o), limit=limit, offset=offset
        )


def get_operator(rt: Runtime, login: str) -> OperatorRecord:
    """The operator with this login.

    Raises:
        NotFound: There is none (code ``operator.not_found``).
    """
    with rt.uow.begin(read_only=True) as tx:
        return tx.operators.require(login)


def disable_operator(rt: Runtime, login: str, *, now: datetime) -> OperatorRecord:
    """Disable an operator: its sessions end and its API tokens are revoked.

    Raises:
        NotFound: No such operator.
    """
    with rt.uow.begin() as tx:
        current = tx.operators.require(login)
        if current.disabled:
            return current
        _keep_an_admin(tx, current)
        record = tx.operators.update(login, now=now, disabled_at=now)
        sessions = tx.operators.end_sessions(record.id, now=now)
        tokens = tx.operators.revoke_tokens(operator_id=record.id, now=now)
        _event(
            tx, "operator.disabled", login, now=now,
            details={"sessions_ended": sessions, "tokens_revoked": tokens},
        )  # fmt: skip
        return record


def _keep_an_admin(tx: Transaction, leaving: OperatorRecord) -> None:
    """Refuse to disable or demote the last enabled admin (nobody could manage operators)."""
    if (
        leaving.role == "admin"
        and not leaving.disabled
        and tx.operators.count(role="admin", enabled_only=True) <= 1
    ):
        raise Conflict(
            f"{leaving.login!r} is the last enabled admin",
            hint="add or enable another admin first",
            code="operator.last_admin",
        )


def enable_operator(rt: Runtime, login: str, *, now: datetime) -> OperatorRecord:
    """Enable a disabled operator (its revoked tokens stay revoked).

    Raises:
        NotFound: No such operator.
    """
    with rt.uow.begin() as tx:
        current = tx.operators.require(login)
        if not current.disabled:
            return current
        record = tx.operators.update(login, now=now, disabled_at=None)
        _event(tx, "operator.enabled", login, now=now)
        return record


def reset_mfa(rt: Runtime, login: str, *, now: datetime) -> OperatorRecord:
    """Remove an operator's TOTP seed and passkeys and end its sessions (it enrolls again at
    its next login).

    Raises:
        NotFound: No such operator.
    """
    with rt.uow.begin() as tx:
        current = tx.operators.require(login)
        passkeys = tx.operators.delete_passkeys(current.id)
        record = tx.operators.update(
            login, now=now, totp_secret=None, totp_confirmed_at=None, totp_last_step=None
        )
        sessions = tx.operators.end_sessions(record.id, now=now)
        _event(
            tx, "operator.mfa_reset", login, now=now,
            details={"passkeys_removed": passkeys, "sessions_ended": sessions},
        )  # fmt: skip
        return record


def set_role(rt: Runtime, login: str, role: str, *, now: datetime) -> OperatorRecord:
    """Change an operator's role; its sessions end (they were opened under the old role).

    Raises:
        NotFound: No such operator.
        InvalidInput: Not an operator role.
    """
    check_operator_role(role)
    with rt.uow.begin() as tx:
        current = tx.operators.require(login)
        if current.role == role:
            return current
        _keep_an_admin(tx, current)
        record = tx.operators.update(login, now=now, role=role)
        tx.operators.end_sessions(record.id, now=now)
        _event(
            tx, "operator.role_changed", login, now=now, details={"from": current.role, "to": role}
        )
        return record


def change_password(rt: Runtime, *, login: str, old: str, new: str, now: datetime) -> None:
    """Change one's password (the old one must be right); clears ``must_change_password``.

    Raises:
        Unauthenticated: The old password is wrong, or no such (enabled) operator, or the login
            is locked (code ``auth.login``); a wrong password counts towards the lockout.
        InvalidInput: The new password is too short or too long, or equals the old one.
    """
    passwords.check_new_password(new)
    if new == old:
        raise InvalidInput("the new password equals the old one", code="operator.password.same")
    settings = rt.settings.operators
    key = throttle.keys_for(login, "")[0]
    with rt.uow.begin(read_only=True) as tx:  # argon2 runs outside the write lock
        creds = tx.operators.credentials(login) if LOGIN_PATTERN.fullmatch(login) else None
        locked = bool(throttle.locked_keys(tx, (key,), now=now))
    if locked or creds is None or creds.operator.disabled:
        passwords.dummy_verify(settings)
        right = False
    else:
        right = passwords.verify_password(settings, creds.password_hash, old)
    if not right:
        if not locked:
            with rt.uow.begin() as tx:
                throttle.record_failure(tx, (key,), settings=settings, now=now)
        raise Unauthenticated("login failed", code="auth.login")
    new_hash = passwords.hash_password(settings, new)
    with rt.uow.begin() as tx:
        tx.operators.update(login, now=now, password_hash=new_hash, must_change_password=False)
        _event(tx, "operator.password_changed", login, now=now)
