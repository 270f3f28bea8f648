"""Repository of the operator plane: operators and their passkeys (this module), API tokens,
sessions and login throttling (:mod:`trustfleet.store._operator_access`)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from trustfleet.errors import NotFound
from trustfleet.store import _validate as check
from trustfleet.store._operator_access import OperatorAccessMixin
from trustfleet.store._operator_models import OPERATOR_ROLE_VALUES, OperatorRow, PasskeyRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.operator_records import OperatorCredentials, OperatorRecord, PasskeyRecord

__all__ = ["OperatorRepository"]

_PASSKEYS = (
    select(func.count())
    .where(PasskeyRow.operator_id == OperatorRow.id)
    .correlate(OperatorRow)
    .scalar_subquery()
)


def _record(row: OperatorRow, passkeys: int) -> OperatorRecord:
    return record_of(
        OperatorRecord,
        row,
        totp_enabled=row.totp_confirmed_at is not None,
        passkeys=int(passkeys),
    )


def _passkey(row: PasskeyRow) -> PasskeyRecord:
    return record_of(
        PasskeyRecord, row, credential_id=bytes(row.credential_id), public_key=bytes(row.public_key)
    )


class OperatorRepository(OperatorAccessMixin):
    """Operators, passkeys, API tokens, sessions, throttling. Get it as ``tx.operators``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add(
        self, *, login: str, role: str, password_hash: str, must_change_password: bool,
        now: datetime,
    ) -> OperatorRecord:  # fmt: skip
        """Add an operator.

        Raises:
            Conflict: The login is taken.
            InvalidInput: A value is malformed.
        """
        now = check.aware(now, name="now")
        row = OperatorRow(
            login=check.text(login, name="login", max_chars=64),
            role=check.one_of(role, OPERATOR_ROLE_VALUES, name="role"),
            password_hash=check.text(password_hash, name="password hash", max_chars=256),
            must_change_password=must_change_password,
            created_at=now,
            updated_at=now,
        )
        insert(self._handle.session, row, duplicate=f"operator {login!r} already exists")
        return _record(row, 0)

    def get(self, login: str) -> OperatorRecord | None:
        """The operator with this login, or None."""
        found = self._handle.session.execute(
            select(OperatorRow, _PASSKEYS).where(OperatorRow.login == login)
        ).one_or_none()
        return None if found is None else _record(found[0], found[1])

    def get_by_id(self, id: int) -> OperatorRecord | None:
        """The operator with this row id, or None."""
        found = self._handle.session.execute(
            select(OperatorRow, _PASSKEYS).where(OperatorRow.id == id)
        ).one_or_none()
        return None if found is None else _record(found[0], found[1])

    def require(self, login: str) -> OperatorRecord:
        """The operator with this login.

        Raises:
            NotFound: There is none (code ``operator.not_found``).
        """
        record = self.get(login)
        if record is None:
            raise _not_found(login)
        return record

    def credentials(self, login: str) -> OperatorCredentials | None:
        """The operator with its password hash and TOTP state, or None."""
        found = self._handle.session.execute(
            select(OperatorRow, _PASSKEYS).where(OperatorRow.login == login)
        ).one_or_none()
        if found is None:
            return None
        row = found[0]
        return OperatorCredentials(
            operator=_record(row, found[1]),
            password_hash=row.password_hash,
            totp_secret=row.totp_secret,
            totp_last_step=row.totp_last_step,
        )

    def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[OperatorRecord]:
        """Operators ordered by login.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        query = select(OperatorRow, _PASSKEYS).order_by(OperatorRow.login)
        rows = self._handle.session.execute(query.limit(limit).offset(offset))
        return [_record(row, count) for row, count in rows]

    def count(self, *, role: str | None = None, enabled_only: bool = False) -> int:
        """How many operators there are (of one role, only enabled ones, if asked)."""
        query = select(func.count()).select_from(OperatorRow)
        if role is not None:
            query = query.where(OperatorRow.role == role)
        if enabled_only:
            query = query.where(OperatorRow.disabled_at.is_(None))
        return self._handle.session.scalar(query) or 0

    def update(self, login: str, *, now: datetime, **values: Any) -> OperatorRecord:
        """Change columns of an operator (``role``, ``password_hash``, ``must_change_password``,
        ``disabled_at``, ``totp_secret``, ``totp_confirmed_at``, ``totp_last_step``,
        ``last_login_at``); the services decide which changes are allowed.

        Raises:
            NotFound: There is no such operator.
            InvalidInput: An unknown column or a bad role.
        """
        allowed = {
            "role", "password_hash", "must_change_password", "disabled_at", "totp_secret",
            "totp_confirmed_at", "totp_last_step", "last_login_at",
        }  # fmt: skip
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not an operator column: {sorted(unknown)}")
        if "role" in values:
            check.one_of(values["role"], OPERATOR_ROLE_VALUES, name="role")
        row = self._locked(login)
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = check.aware(now, name="now")
        self._handle.session.flush()
        return self.require(login)

    def use_totp_step(self, operator_id: int, step: int) -> bool:
        """Record ``step`` as the last TOTP step used, if it is later than the last one.

        Returns:
            False when this step (or a later one) was used already: the code is refused.
        """
        result = self._handle.session.execute(
            update(OperatorRow)
            .where(OperatorRow.id == operator_id)
            .where(OperatorRow.totp_last_step.is_(None) | (OperatorRow.totp_last_step < step))
            .values(totp_last_step=step)
        )
        return bool(getattr(result, "rowcount", 0))

    def _locked(self, login: str) -> OperatorRow:
        row = self._handle.session.scalars(
            select(OperatorRow).where(OperatorRow.login == login).with_for_update()
        ).one_or_none()
        if row is None:
            raise _not_found(login)
        return row

    # passkeys

    def add_passkey(
        self, *, operator_id: int, credential_id: bytes, public_key: bytes, sign_count: int,
        name: str, now: datetime,
    ) -> PasskeyRecord:  # fmt: skip
        """Register a passkey.

        Raises:
            Conflict: The credential id is registered already.
        """
        row = PasskeyRow(
            operator_id=operator_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=check.bigint(sign_count, name="sign count"),
            name=check.text(name, name="passkey name", max_chars=64),
            created_at=check.aware(now, name="now"),
        )
        insert(self._handle.session, row, duplicate="this passkey is registered already")
        return _passkey(row)

    def passkeys(self, operator_id: int) -> builtins.list[PasskeyRecord]:
        """An operator's passkeys, oldest first (an operator has a handful)."""
        query = select(PasskeyRow).where(PasskeyRow.operator_id == operator_id)
        return [
            _passkey(row) for row in self._handle.session.scalars(query.order_by(PasskeyRow.id))
        ]

    def passkey(self, credential_id: bytes) -> PasskeyRecord | None:
        """The passkey with this credential id, or None."""
        query = select(PasskeyRow).where(PasskeyRow.credential_id == credential_id)
        row = self._handle.session.scalars(query).one_or_none()
        return None if row is None else _passkey(row)

    def use_passkey(self, id: int, *, old_count: int, new_count: int, now: datetime) -> bool:
        """Store a passkey's new signature counter if it is still ``old_count`` (no race).

        Returns:
            False when another login changed the counter meanwhile.
        """
        result = self._handle.session.execute(
            update(PasskeyRow)
            .where(PasskeyRow.id == id, PasskeyRow.sign_count == old_count)
            .values(sign_count=check.bigint(new_count, name="sign count"),
                    last_used_at=check.aware(now, name="now"))
        )  # fmt: skip
        return bool(getattr(result, "rowcount", 0))

    def delete_passkeys(self, operator_id: int) -> int:
        """Remove every passkey of an operator; how many there were."""
        result = self._handle.session.execute(
            delete(PasskeyRow).where(PasskeyRow.operator_id == operator_id)
        )
        return int(getattr(result, "rowcount", 0))


def _not_found(login: str) -> NotFound:
    return NotFound(f"operator {login[:64]!r} not found", code="operator.not_found")
