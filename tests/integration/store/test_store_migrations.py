"""Migrations run on SQLite and PostgreSQL, again without effect, and match the models."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import trustfleet.store
from trustfleet.store import create_engine, migrate, sqlite_url
from trustfleet.store._models import Base

TABLES = {
    "alembic_version",
    "devices",
    "certificates",
    "security_events",
    "crls",
    "telemetry",
    "releases",
    "campaigns",
    "campaign_devices",
    "attestation_keys",
    "ak_enrollments",
    "attestation_challenges",
    "attestation_results",
}
_VERSIONS = Path(trustfleet.store.__file__).parent / "migrations" / "versions"
HEAD = max(p.name.split("_")[0] for p in _VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_migrate_creates_schema_and_is_idempotent(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate(engine)
        inspector = sqlalchemy.inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        with engine.connect() as conn:
            first = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
        migrate(engine)
        with engine.connect() as conn:
            second = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
        assert first == second == [(HEAD,)]
    finally:
        engine.dispose()


def test_migrated_schema_matches_models(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path / "s.db"))
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 10000,
    }


def test_concurrent_migrations_are_safe(db_url: str) -> None:
    engines = [create_engine(db_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(engine: sqlalchemy.Engine) -> None:
        try:
            migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with engines[0].connect() as conn:
            versions = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert versions.all() == [(HEAD,)]
    finally:
        for engine in engines:
            engine.dispose()


def test_new_sqlite_database_opened_by_many_at_once(tmp_path: Path) -> None:
    # Regression: turning a new database to WAL from several connections at once made SQLite
    # answer one of them "database is locked" without waiting (CI failed on it about one run in
    # ten of the test above). Every one of these first connections must now get through.
    errors: list[BaseException] = []

    def first_write(url: str) -> None:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    for round_ in range(25):
        url = sqlite_url(tmp_path / f"new-{round_}.db")
        threads = [threading.Thread(target=first_write, args=(url,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
