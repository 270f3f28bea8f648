"""Pure parts of the store: timestamp type, input checks, error translation, URLs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite

import trustfleet.store
from trustfleet.errors import Config, Conflict, InvalidInput, Unavailable
from trustfleet.store import _validate as check
from trustfleet.store import create_engine, sqlite_url
from trustfleet.store._errors import integrity_kind, translate
from trustfleet.store._types import UTCDateTime

PLUS_5 = timezone(timedelta(hours=5))


def test_utc_datetime_on_sqlite_stores_naive_utc_and_returns_aware() -> None:
    column = UTCDateTime()
    dialect = sqlite.dialect()
    stored = column.process_bind_param(datetime(2025, 1, 1, 17, tzinfo=PLUS_5), dialect)
    assert stored == datetime(2025, 1, 1, 12)
    assert stored is not None
    assert stored.tzinfo is None
    loaded = column.process_result_value(stored, dialect)
    assert loaded == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert loaded is not None
    assert loaded.tzinfo is UTC


def test_utc_datetime_on_postgresql_normalises_to_utc() -> None:
    column = UTCDateTime()
    dialect = create_engine("postgresql+psycopg://u@localhost/db").dialect  # does not connect
    value = datetime(2025, 1, 1, 17, tzinfo=PLUS_5)
    assert column.process_bind_param(value, dialect) == value
    loaded = column.process_result_value(value, dialect)
    assert loaded is not None
    assert loaded.tzinfo is UTC
    assert loaded.hour == 12
    assert column.process_bind_param(None, dialect) is None


def test_utc_datetime_refuses_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2025, 1, 1), sqlite.dialect())


@pytest.mark.parametrize(
    ("serial", "ok"),
    [("1", True), ("abcdef0123", True), ("0", False), ("01", False), ("AB", False), ("", False)],
    ids=["one", "long", "zero", "leading-zero", "upper", "empty"],
)
def test_serial_check(serial: str, ok: bool) -> None:
    if ok:
        assert check.serial(serial) == serial
    else:
        with pytest.raises(InvalidInput):
            check.serial(serial)


def test_json_depth_is_bounded() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(check.MAX_JSON_DEPTH + 1):
        child: dict[str, object] = {}
        node["x"] = child
        node = child
    with pytest.raises(InvalidInput, match="deeper"):
        check.json_object(deep, max_bytes=1 << 20)


def test_json_tuples_become_lists() -> None:
    assert check.json_object({"a": (1, 2)}, max_bytes=100) == {"a": [1, 2]}


def _integrity(orig: Exception) -> sa_exc.IntegrityError:
    return sa_exc.IntegrityError("INSERT ...", {}, orig)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("orig", "kind"),
    [
        (_PgError("23505"), "unique"),
        (_PgError("23503"), "foreign_key"),
        (_PgError("23514"), "check"),
        (_PgError("23001"), "other"),
    ],
    ids=["pg-unique", "pg-fk", "pg-check", "pg-restrict"],
)
def test_integrity_kind_postgresql(orig: Exception, kind: str) -> None:
    assert integrity_kind(_integrity(orig)) == kind


def test_integrity_kind_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert integrity_kind(_integrity(caught.value)) == "unique"


def test_translate_categories() -> None:
    assert isinstance(translate(_integrity(_PgError("23505"))), Conflict)
    locked = sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    error = translate(locked)
    assert isinstance(error, Unavailable)
    assert "database is locked" in error.message
    assert translate(sa_exc.ProgrammingError("x", {}, Exception("syntax"))) is None


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "not a url", "oracle+cx_oracle://x"], ids=["mysql", "junk", "oracle"]
)
def test_create_engine_refuses_unsupported_urls(url: str) -> None:
    with pytest.raises(Config):
        create_engine(url)


def test_sqlite_url_is_absolute(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "x.db")
    assert url == f"sqlite:///{tmp_path.resolve() / 'x.db'}"


def test_no_orm_class_is_public() -> None:
    exported = {getattr(trustfleet.store, name) for name in trustfleet.store.__all__}
    assert not any(getattr(value, "__tablename__", None) for value in exported)
