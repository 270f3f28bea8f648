"""How ``pg_dump`` / ``pg_restore`` are called: never a password on a command line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from trustfleet.errors import Config
from trustfleet.services.backup_pg import _conninfo, _environment, is_postgres, pg_tool


def test_the_connection_string_has_no_password() -> None:
    url = make_url("postgresql+psycopg://tf:s3cr:et@db.example:6543/fleet?sslmode=require")
    info = _conninfo(url)
    assert "s3cr" not in info
    for part in ("host=db.example", "port=6543", "user=tf", "dbname=fleet", "sslmode=require"):
        assert part in info


def test_the_password_goes_to_a_private_passfile() -> None:
    url = make_url("postgresql+psycopg://tf:a%3Ab%5Cc@h/db")  # password a:b\c
    with _environment(url) as env:
        passfile = Path(env["PGPASSFILE"])
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
        assert passfile.read_text() == "*:*:*:*:a\\:b\\\\c\n"
        assert "PGPASSWORD" not in env
    assert not passfile.exists()


def test_without_a_password_nothing_is_written() -> None:
    with _environment(make_url("postgresql+psycopg://tf@h/db")) as env:
        assert env.get("PGPASSFILE") == os.environ.get("PGPASSFILE")


def test_which_urls_are_postgres() -> None:
    assert is_postgres("postgresql+psycopg://u@h/d")
    assert is_postgres("postgresql://u@h/d")
    assert not is_postgres("sqlite:////tmp/x.sqlite3")


def test_a_missing_client_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TF_PG_BINDIR", str(tmp_path))
    with pytest.raises(Config) as caught:
        pg_tool("pg_dump_that_does_not_exist")
    assert caught.value.code == "backup.pg.missing"
