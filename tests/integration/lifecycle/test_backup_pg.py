"""``server backup`` / ``server restore`` / the pre-migration copy on a PostgreSQL store.

One home on a database of the session's PostgreSQL cluster (a device and an event added), backed
up (pg_dump inside the encrypted file), restored into a new folder and a new empty database:
the devices and events are equal, ``[store] url`` names the new database, the audit log
verifies. A database with tables is refused, a restore without ``--store-url`` is one line and
leaves nothing, and a migration of the PostgreSQL store leaves a pg_dump copy (0600).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from support.postgres import PostgresCluster
from trustfleet.errors import Conflict
from trustfleet.services.backup import take_backup
from trustfleet.services.backup_crypto import ScryptCost, key_for_passphrase
from trustfleet.services.backup_pg import pg_tool
from trustfleet.services.restore import restore_backup
from trustfleet.services.upgrade import upgrade_store
from trustfleet.settings import load_server_settings
from trustfleet.sim.fleet import utc_now
from trustfleet.sim.server import SimServer, console_script
from trustfleet.store import UnitOfWork, create_engine, head_revision, schema_revision

pytestmark = pytest.mark.postgres

PASSPHRASE = b"pg backup drill: long words"
CHEAP = ScryptCost(log_n=12)
CLI_TIMEOUT_S = 180.0


@dataclass
class PgHome:
    cluster: PostgresCluster
    server: SimServer
    backup: Path
    passphrase: Path
    work: Path


def _url(cluster: PostgresCluster, name: str, *, password: str | None = None) -> str:
    user = "postgres" + (f":{password}" if password else "")
    return f"postgresql+psycopg://{user}@127.0.0.1:{cluster.port}/{name}"


def _tf(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [str(console_script("trustfleet")), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def _contents(url: str) -> tuple[list[tuple[str, str, str]], list[tuple[int, str, str]]]:
    engine = create_engine(url)
    try:
        with UnitOfWork(engine).begin(read_only=True) as tx:
            devices = [(d.id, d.model, str(d.state)) for d in tx.devices.list(limit=1000)]
            events = [(e.id, e.type, e.subject) for e in tx.events.list(limit=1000)]
    finally:
        engine.dispose()
    return devices, events


@pytest.fixture(scope="module")
def pg_home(
    postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgHome]:
    """A home on PostgreSQL with a device and an event, and its backup."""
    work = tmp_path_factory.mktemp("pg-backup")
    name = postgres_cluster.create_database()
    server = SimServer.create(
        work / "home", now=utc_now(), store_url=_url(postgres_cluster, name, password="unused")
    )
    try:
        rt = server.runtime
        with rt.uow.begin() as tx:
            tx.devices.add(id="dev-pg-1", model="m", now=utc_now())
            tx.events.append(
                type="device.registered", actor="test", subject="dev-pg-1", details={},
                now=utc_now(),
            )  # fmt: skip
        server.close_runtime()
        proc = _tf("audit", "checkpoint", "--now", "--home", server.home)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        rt = server.runtime
        backup = work / "home.tfbackup"
        take_backup(rt, out=backup, key=key_for_passphrase(PASSPHRASE, cost=CHEAP), now=utc_now())
        passphrase = work / "passphrase"
        passphrase.write_bytes(PASSPHRASE + b"\n")
        yield PgHome(postgres_cluster, server, backup, passphrase, work)
    finally:
        server.close_runtime()
        postgres_cluster.drop_database(name)


def test_a_pg_home_restores_into_an_empty_database(pg_home: PgHome) -> None:
    target = pg_home.cluster.create_database()
    try:
        url = _url(pg_home.cluster, target)
        home = pg_home.work / "restored"
        report = restore_backup(
            pg_home.backup, home=home, passphrase=PASSPHRASE, now=utc_now(), store_url=url
        )
        assert report.meta["store"] == "postgresql"
        assert report.meta["schema_revision"] == head_revision()
        assert load_server_settings(home).store.url == url
        assert not (home / "db" / "trustfleet.pgdump").exists()
        source_devices, source_events = _contents(pg_home.server.settings.store_url())
        devices, events = _contents(url)
        assert devices == source_devices
        assert ("dev-pg-1", "m") in [(d[0], d[1]) for d in devices]
        # the source's events up to the dump (server.backup.taken comes after it), then
        # server.restored
        assert [e for e in events if e[1] != "server.restored"] == [
            e for e in source_events if e[1] != "server.backup.taken"
        ]
        assert ("device.registered", "dev-pg-1") in [(e[1], e[2]) for e in events]
        assert [e[1] for e in events].count("server.restored") == 1
        proc = _tf("audit", "verify", "--home", home)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    finally:
        pg_home.cluster.drop_database(target)


def test_a_database_with_tables_is_refused(pg_home: PgHome) -> None:
    """The source's own database is not empty: refused before anything is created."""
    home = pg_home.work / "refused"
    with pytest.raises(Conflict) as caught:
        restore_backup(
            pg_home.backup, home=home, passphrase=PASSPHRASE, now=utc_now(),
            store_url=pg_home.server.settings.store_url(),
        )  # fmt: skip
    assert caught.value.code == "restore.store.not_empty"
    assert not home.exists()


def test_without_store_url_one_line_and_nothing_left(pg_home: PgHome) -> None:
    home = pg_home.work / "no-url"
    proc = _tf("server", "restore", pg_home.backup, "--home", home, "--passphrase-file",
               pg_home.passphrase)  # fmt: skip
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    message, _, hint = lines[0].partition(" Hint: ")
    assert "PostgreSQL store" in message
    assert "--store-url" in hint
    assert not home.exists()


def test_the_pre_migration_copy_is_a_pg_dump(pg_home: PgHome) -> None:
    """The last test of the module: the source store taken back to 0009, then upgraded."""
    from alembic import command

    from trustfleet.store._engine import alembic_config

    settings = pg_home.server.settings
    pg_home.server.close_runtime()
    engine = create_engine(settings.store_url())
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0009")
    finally:
        engine.dispose()
    report = upgrade_store(settings, now=utc_now())
    assert report is not None and report.backup is not None
    assert report.from_revision == "0009"
    assert report.backup.stat().st_mode & 0o777 == 0o700
    dump = report.backup / "trustfleet.pgdump"
    assert dump.stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(
        [str(pg_tool("pg_restore")), "--list", str(dump)], capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "TABLE public devices" in listing
    engine = create_engine(settings.store_url())
    try:
        assert schema_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert make_url(settings.store_url()).password == "unused"
