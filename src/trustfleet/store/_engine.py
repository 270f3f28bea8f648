"""Engines for SQLite (embedded default) and PostgreSQL, and schema migration."""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from trustfleet.errors import Config
from trustfleet.store._errors import translate

__all__ = [
    "BUSY_TIMEOUT_S",
    "alembic_config",
    "create_engine",
    "head_revision",
    "migrate",
    "schema_revision",
    "sqlite_url",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S: Final = 10.0
"""How long a SQLite writer waits for another process's write lock before giving up."""

CONNECT_TIMEOUT_S: Final = 10
"""How long connecting to PostgreSQL may take."""

_MIGRATION_LOCK_KEY: Final = 0x74665F6D6967  # "tf_mig": serialises concurrent migrate() calls
_SQLITE_BEGIN_OPTION: Final = "trustfleet_sqlite_begin"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file.

    Args:
        path: The database file (created on first use).

    Returns:
        A ``sqlite:///`` URL with an absolute path.
    """
    return URL.create("sqlite", database=str(path.expanduser().resolve())).render_as_string()


def create_engine(url: str) -> sqlalchemy.Engine:
    """An engine for ``sqlite:///...`` or ``postgresql+psycopg://...``.

    SQLite connections use WAL, ``synchronous=NORMAL``, foreign keys and a busy timeout, and
    every transaction starts with ``BEGIN IMMEDIATE`` so that writers queue for the lock
    instead of failing half-way; the file can be shared by several processes and threads.
    PostgreSQL gets a normal connection pool with pre-ping.

    Args:
        url: The database URL. ``postgresql://`` means ``postgresql+psycopg://``.

    Returns:
        A new engine; dispose of it when done.

    Raises:
        Config: The URL is malformed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise Config(
            "malformed database URL",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        ) from exc
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return _sqlite_engine(parsed)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return sqlalchemy.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    raise Config(
        f"unsupported database {parsed.drivername!r}",
        hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
    )


def _sqlite_engine(url: URL) -> sqlalchemy.Engine:
    engine = sqlalchemy.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover - defensive
        raise Config("unexpected SQLite driver")
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling defers it and
    # breaks SAVEPOINT); see _sqlite_on_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    # Turning a new database to WAL takes its exclusive lock; two connections doing it at once
    # deadlock on their shared locks, and SQLite answers one of them SQLITE_BUSY at once, without
    # its busy handler. Retry that within the busy timeout (a regression test opens four at once).
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "IMMEDIATE")
    connection.exec_driver_sql("BEGIN DEFERRED" if mode == "DEFERRED" else "BEGIN IMMEDIATE")


def alembic_config() -> AlembicConfig:
    """An Alembic configuration for the migrations shipped inside this package.

    Useful for developers (e.g. ``command.revision(cfg, autogenerate=True)`` with
    ``cfg.attributes["connection"]`` set); :func:`migrate` is what applications call.

    Returns:
        A configuration with ``script_location`` set; no ini file is read.
    """
    config = AlembicConfig()
    config.set_main_option("script_location", "trustfleet.store:migrations")
    return config


def migrate(engine: sqlalchemy.Engine) -> None:
    """Upgrade the database schema to the newest revision.

    Runs in one transaction; running it again, or from several processes at once, is safe.

    Args:
        engine: An engine from :func:`create_engine`.

    Raises:
        Unavailable: The database cannot be reached or stayed locked.
    """
    config = alembic_config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sa_exc.SQLAlchemyError as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc
    logger.info("database schema is at the newest revision")


@functools.cache
def head_revision() -> str:
    """The newest schema revision this version of TrustFleet ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise Config("no schema migrations found in the package")
    return head


def schema_revision(engine: sqlalchemy.Engine) -> str | None:
    """The store's schema revision (None: an empty database, never migrated).

    Raises:
        Unavailable: The database cannot be reached.
    """
    try:
        with engine.connect() as connection:
            reading = connection.execution_options(**{_SQLITE_BEGIN_OPTION: "DEFERRED"})
            return MigrationContext.configure(reading).get_current_revision()
    except sa_exc.SQLAlchemyError as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc
