"""The access half of ``tx.operators``: API tokens, console sessions, login throttling."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update

from trustfleet.errors import Conflict
from trustfleet.store import _validate as check
from trustfleet.store._operator_models import (
    OPERATOR_ROLE_VALUES,
    SESSION_STAGES,
    ApiTokenRow,
    LoginThrottleRow,
    OperatorRow,
    OperatorSessionRow,
)
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.operator_records import (
    ApiTokenRecord,
    SessionRecord,
    StoredToken,
    ThrottleRecord,
)

__all__ = ["OperatorAccessMixin"]

_TOKENS = select(ApiTokenRow, OperatorRow.login).join(
    OperatorRow, OperatorRow.id == ApiTokenRow.operator_id
)


def _token(row: ApiTokenRow, owner: str) -> ApiTokenRecord:
    return record_of(ApiTokenRecord, row, owner=owner)


def _session(row: OperatorSessionRow) -> SessionRecord:
    challenge = None if row.challenge is None else bytes(row.challenge)
    return record_of(SessionRecord, row, challenge=challenge)


class OperatorAccessMixin:
    """API tokens, sessions and throttling of ``tx.operators``."""

    _handle: SessionHandle

    # API tokens

    def add_token(
        self, *, id: str, operator_id: int, name: str, role: str, secret_sha256: str,
        now: datetime, expires_at: datetime,
    ) -> ApiTokenRecord:  # fmt: skip
        """Store a new API token (its secret only as SHA-256).

        Raises:
            Conflict: The id is taken.
            NotFound: There is no such operator.
        """
        row = ApiTokenRow(
            id=check.text(id, name="token id", max_chars=16),
            operator_id=operator_id,
            name=check.text(name, name="token name", max_chars=64),
            role=check.one_of(role, OPERATOR_ROLE_VALUES, name="role"),
            secret_sha256=check.sha256_hex(secret_sha256),
            created_at=check.aware(now, name="now"),
            expires_at=check.aware(expires_at, name="expires_at"),
        )
        insert(
            self._handle.session, row, duplicate="token id taken",
            missing_reference="no such operator",
        )  # fmt: skip
        owner = self._handle.session.scalar(
            select(OperatorRow.login).where(OperatorRow.id == operator_id)
        )
        return _token(row, owner or "")

    def stored_token(self, id: str) -> StoredToken | None:
        """A token with the hash of its secret, or None."""
        found = self._handle.session.execute(_TOKENS.where(ApiTokenRow.id == id)).one_or_none()
        if found is None:
            return None
        return StoredToken(token=_token(found[0], found[1]), secret_sha256=found[0].secret_sha256)

    def tokens(
        self, *, operator_id: int | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[ApiTokenRecord]:
        """API tokens (optionally of one operator), newest first.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        query = _TOKENS.order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id)
        if operator_id is not None:
            query = query.where(ApiTokenRow.operator_id == operator_id)
        rows = self._handle.session.execute(query.limit(limit).offset(offset))
        return [_token(row, owner) for row, owner in rows]

    def touch_token(self, id: str, *, now: datetime) -> None:
        """Record that a token authenticated a request."""
        self._update(ApiTokenRow, ApiTokenRow.id == id, last_used_at=check.aware(now, name="now"))

    def revoke_tokens(
        self, *, now: datetime, id: str | None = None, operator_id: int | None = None
    ) -> int:
        """Revoke one token (``id``) or every live token of an operator; how many changed."""
        where: list[ColumnElement[bool]] = [ApiTokenRow.revoked_at.is_(None)]
        if id is not None:
            where.append(ApiTokenRow.id == id)
        if operator_id is not None:
            where.append(ApiTokenRow.operator_id == operator_id)
        return self._update(ApiTokenRow, *where, revoked_at=check.aware(now, name="now"))

    # sessions

    def add_session(
        self, *, id_sha256: str, operator_id: int, stage: str, csrf_sha256: str,
        mfa_method: str | None, origin: str, now: datetime, expires_at: datetime,
    ) -> SessionRecord:  # fmt: skip
        """Open a session (stored under the SHA-256 of its secret)."""
        now = check.aware(now, name="now")
        row = OperatorSessionRow(
            id_sha256=check.sha256_hex(id_sha256),
            operator_id=operator_id,
            stage=check.one_of(stage, SESSION_STAGES, name="stage"),
            csrf_sha256=check.sha256_hex(csrf_sha256),
            mfa_method=mfa_method,
            created_at=now,
            last_seen_at=now,
            expires_at=check.aware(expires_at, name="expires_at"),
            origin=origin[:256] or "-",
        )
        insert(self._handle.session, row, duplicate="session id taken")
        return _session(row)

    def session_by_hash(self, id_sha256: str) -> SessionRecord | None:
        """The session stored under this hash, or None."""
        table = OperatorSessionRow.__table__
        query = select(table).where(table.c.id_sha256 == id_sha256)
        row = self._handle.session.execute(query).one_or_none()
        return None if row is None else _session(row)  # type: ignore[arg-type]  # same attributes

    def update_session(self, id_sha256: str, **values: Any) -> bool:
        """Change ``last_seen_at``, ``challenge`` or ``ended_at`` of a live session.

        Returns:
            False when there is no such live session.
        """
        if set(values) - {"last_seen_at", "challenge", "ended_at"}:
            raise ValueError(f"not a session column to change: {sorted(values)}")
        where = (OperatorSessionRow.id_sha256 == id_sha256, OperatorSessionRow.ended_at.is_(None))
        return bool(self._update(OperatorSessionRow, *where, **values))

    def end_sessions(self, operator_id: int, *, now: datetime) -> int:
        """End every live session of an operator; how many there were."""
        return self._update(
            OperatorSessionRow,
            OperatorSessionRow.operator_id == operator_id,
            OperatorSessionRow.ended_at.is_(None),
            ended_at=check.aware(now, name="now"),
        )

    # throttling

    def throttle(self, key: str, *, for_update: bool = False) -> ThrottleRecord | None:
        """The failures counted under ``key``, or None (its row locked, if asked, until the
        transaction ends: not in a read-only one)."""
        query = select(LoginThrottleRow).where(LoginThrottleRow.key == key)
        if for_update:
            query = query.with_for_update()
        row = self._handle.session.scalars(query.execution_options(populate_existing=True)).first()
        return None if row is None else record_of(ThrottleRecord, row)

    def put_throttle(self, record: ThrottleRecord) -> None:
        """Store the failures counted under ``record.key`` (replacing what was there)."""
        values = {
            "failures": record.failures,
            "window_started_at": check.aware(record.window_started_at, name="window start"),
            "locked_until": record.locked_until,
        }
        if self._update(LoginThrottleRow, LoginThrottleRow.key == record.key, **values):
            return
        row = LoginThrottleRow(key=check.text(record.key, name="throttle key", max_chars=128))
        for name, value in values.items():
            setattr(row, name, value)
        try:
            insert(self._handle.session, row, duplicate="throttle key taken")
        except Conflict:  # another failure inserted it meanwhile: this one counts over it
            self._update(LoginThrottleRow, LoginThrottleRow.key == record.key, **values)

    def clear_throttle(self, key: str) -> None:
        """Forget the failures counted under ``key``."""
        self._handle.session.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key == key))

    def _update(self, model: Any, *where: Any, **values: Any) -> int:
        result = self._handle.session.execute(update(model).where(*where).values(**values))
        return int(getattr(result, "rowcount", 0))
