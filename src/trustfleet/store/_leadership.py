"""Leadership of a singleton role across the service hosts that share one store (ADR 0023).

On PostgreSQL a role is held through a session-level advisory lock on a connection kept open
for it: PostgreSQL releases the lock when that session ends (the process died, the host was cut
off and its connection closed, the server restarted), so another host's next try takes it. The
holder checks every call that its session still holds the lock (``pg_locks``), so a lost
connection is noticed at the next check, never assumed away. The holder's name is the
connection's ``application_name``: :func:`role_holders` tells who leads each role.

On SQLite there is one server per store (the home's lock), which always leads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from typing import Final

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from trustfleet.store._errors import translate

__all__ = ["LEADER_LOCK_CLASS", "Leadership", "role_holders"]

logger = logging.getLogger(__name__)

LEADER_LOCK_CLASS: Final = 0x7466  # "tf": the first key of every leadership advisory lock
_APP_PREFIX: Final = "trustfleet-lead "
_LOCK_TIMEOUT_MS: Final = 5000  # a check that hangs (a host cut off) counts as lost after this
_MAX_ROLE_CHARS: Final = 24


def role_key(role: str) -> int:
    """The advisory lock's second key for ``role`` (31 bits of its SHA-256)."""
    digest = hashlib.sha256(role.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Leadership:
    """Whether this process leads ``role`` among every process sharing the store.

    Not thread-safe: one thread at a time calls :meth:`held` and :meth:`release`.

    Args:
        engine: The store's engine (one connection of its pool is kept while leading).
        role: The singleton's name (``campaigns``, ``audit``, …).
        holder: Who this is, as :func:`role_holders` shows it (default: host name and pid).
    """

    def __init__(self, engine: sqlalchemy.Engine, role: str, *, holder: str | None = None) -> None:
        if not role or len(role) > _MAX_ROLE_CHARS:
            raise ValueError("a leadership role is 1 to 24 characters")
        self.role = role
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._engine = engine
        self._key = role_key(role)
        self._conn: sqlalchemy.Connection | None = None
        self._leading = engine.dialect.name != "postgresql"  # SQLite: one server per store

    @property
    def shared(self) -> bool:
        """Whether other hosts can share the store (PostgreSQL), so leading needs a lock."""
        return self._engine.dialect.name == "postgresql"

    def held(self) -> bool:
        """Take the role if it is free, check it is still ours if we lead; never raises.

        Returns:
            True while this process leads ``role``.
        """
        if not self.shared:
            return True
        was = self._leading
        try:
            self._leading = self._check() if was else self._try()
        except sa_exc.SQLAlchemyError as exc:
            error = translate(exc)
            logger.warning(
                "leadership of %s: %s", self.role, error.one_line() if error else repr(exc)
            )
            self._drop()
            self._leading = False
        if was != self._leading:
            logger.warning(
                "%s %s the lead of %s", self.holder, "took" if self._leading else "lost", self.role
            )
        return self._leading

    def release(self) -> None:
        """Give the role up (closing the session ends its lock); never raises."""
        if self._conn is not None and self._leading:
            try:
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"),
                    {"c": LEADER_LOCK_CLASS, "k": self._key},
                )
            except sa_exc.SQLAlchemyError as exc:
                logger.info("releasing %s: %s", self.role, exc)
        self._drop()
        self._leading = not self.shared

    def _connection(self) -> sqlalchemy.Connection:
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.execute(
                    text("SELECT set_config('application_name', :n, false)"),
                    {"n": f"{_APP_PREFIX}{self.role} {self.holder}"[:63]},
                )
                conn.execute(text(f"SET statement_timeout = {_LOCK_TIMEOUT_MS}"))
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _try(self) -> bool:
        got = (
            self._connection()
            .execute(
                text("SELECT pg_try_advisory_lock(:c, :k)"),
                {"c": LEADER_LOCK_CLASS, "k": self._key},
            )
            .scalar_one()
        )
        return bool(got)

    def _check(self) -> bool:
        still = (
            self._connection()
            .execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND classid = :c AND objid = :k"
                    " AND objsubid = 2 AND granted)"
                ),
                {"c": LEADER_LOCK_CLASS, "k": self._key},
            )
            .scalar_one()
        )
        return bool(still)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.invalidate()  # never back to the pool: a pooled session would keep the lock
            conn.close()
        except sa_exc.SQLAlchemyError as exc:
            logger.info("closing the leadership connection of %s: %s", self.role, exc)


def role_holders(engine: sqlalchemy.Engine) -> dict[str, str]:
    """Who leads each role now, by role (PostgreSQL; empty on SQLite, where the server leads).

    Raises:
        Unavailable: The store cannot be reached.
    """
    if engine.dialect.name != "postgresql":
        return {}
    query = text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objsubid = 2 AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND a.application_name LIKE :p"
    )
    try:
        with engine.connect() as conn:
            names = conn.execute(query, {"c": LEADER_LOCK_CLASS, "p": _APP_PREFIX + "%"}).scalars()
            found = [n[len(_APP_PREFIX) :] for n in names]
    except sa_exc.SQLAlchemyError as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc
    holders: dict[str, str] = {}
    for name in found:
        role, _, holder = name.partition(" ")
        holders[role] = holder
    return holders
