"""Upgrades: the store migrated forward when a newer TrustFleet opens it, a copy taken first.

``server run`` (before anything starts) and every CLI command that opens a home's store call
:func:`upgrade_store`. When the store's schema revision is behind this version's head, it
first copies the store into ``[lifecycle] backup_dir`` (default ``HOME/backups``), then
migrates, and records a ``store.migrated`` security event.

The copy is local and unencrypted, and holds the store only: a folder
``pre-migrate-<revision>-<UTC time>/`` (0700) with ``trustfleet.sqlite3`` (the SQLite online
backup API) and ``trustfleet.toml``, both 0600, in a 0700 folder. It holds no key and no
PIN (those are in ``tokens/`` and ``secrets/``, which a migration never touches) but holds
what the store holds (operators' password hashes, TOTP secrets, device records), like
``db/`` beside it; it exists to go back to the previous version. A full, encrypted backup is
``server backup``. A PostgreSQL store is copied with ``pg_dump --format=custom`` into
``trustfleet.pgdump`` (0600) in the same kind of folder (``pg_restore`` puts it back).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trustfleet.audit.context import current_operator
from trustfleet.fileio import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, fsync_dir, make_dirs
from trustfleet.services.backup import sqlite_path, sqlite_snapshot
from trustfleet.services.backup_pg import DUMP_NAME, is_postgres, pg_dump
from trustfleet.settings import CONFIG_FILE, ServerSettings
from trustfleet.store import UnitOfWork, create_engine, head_revision, migrate, schema_revision

__all__ = ["UpgradeReport", "upgrade_store"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpgradeReport:
    """A migration that happened.

    Attributes:
        from_revision: The store's revision before.
        to_revision: After (this version's head).
        backup: The copy taken first, or None (``backup_before_migrate`` off).
    """

    from_revision: str
    to_revision: str
    backup: Path | None


def upgrade_store(settings: ServerSettings, *, now: datetime) -> UpgradeReport | None:
    """Migrate the home's store to this version's head if it is behind, after a copy.

    A store never migrated (a new database) is migrated without a copy; one at the head is
    left alone (None).

    Raises:
        Config: PostgreSQL with ``backup_before_migrate`` on and no working ``pg_dump``
            (codes ``backup.pg.missing``, ``backup.pg.dump``).
        Unavailable: The store cannot be reached.
    """
    engine = create_engine(settings.store_url())
    try:
        current, head = schema_revision(engine), head_revision()
        if current == head:
            return None
        copy = None
        if current is not None and settings.lifecycle.backup_before_migrate:
            copy = _copy_store(settings, revision=current, now=now)
        migrate(engine)
        report = UpgradeReport(from_revision=current or "", to_revision=head, backup=copy)
        if current is not None:
            _record(UnitOfWork(engine), report, now=now)
    finally:
        engine.dispose()
    logger.warning("store migrated from %s to %s (copy: %s)", current, head, copy)
    return report


def _copy_store(settings: ServerSettings, *, revision: str, now: datetime) -> Path:
    folder = make_dirs(settings.path(settings.lifecycle.backup_dir), mode=PRIVATE_DIR_MODE)
    os.chmod(folder, PRIVATE_DIR_MODE)
    name = f"pre-migrate-{revision}-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    staging = folder / f".{name}.tmp"
    staging.mkdir(mode=PRIVATE_DIR_MODE)
    try:
        url = settings.store_url()
        if is_postgres(url):
            pg_dump(url, staging / DUMP_NAME)
        else:
            sqlite_snapshot(sqlite_path(settings), staging / "trustfleet.sqlite3")
        shutil.copyfile(settings.home / CONFIG_FILE, staging / CONFIG_FILE)
        os.chmod(staging / CONFIG_FILE, PRIVATE_FILE_MODE)
        os.replace(staging, folder / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(folder)
    return folder / name


def _record(uow: UnitOfWork, report: UpgradeReport, *, now: datetime) -> None:
    with uow.begin() as tx:
        tx.events.append(
            type="store.migrated", actor=current_operator(), subject="store",
            details={
                "from": report.from_revision, "to": report.to_revision,
                "backup": str(report.backup) if report.backup else None,
            },
            now=now,
        )  # fmt: skip
