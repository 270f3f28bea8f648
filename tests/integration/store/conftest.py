"""Fixtures of the store's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy

from trustfleet.store import UnitOfWork, create_engine, migrate


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    """A migrated engine on each backend, disposed after the test."""
    engine = create_engine(db_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def uow(engine: sqlalchemy.Engine) -> UnitOfWork:
    """A unit of work on the migrated engine."""
    return UnitOfWork(engine)


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant."""
    return datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
