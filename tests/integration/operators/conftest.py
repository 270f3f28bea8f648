"""A runtime on a migrated store (SQLite and PostgreSQL) with cheap argon2id parameters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustfleet.services.runtime import Runtime
from trustfleet.settings import CaSettings, ServerSettings, StoreSettings
from trustfleet.settings.sections import ApiSettings, OperatorSettings
from trustfleet.store import UnitOfWork, create_engine, migrate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST_HASHES = OperatorSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose store is migrated and empty; the API's public URL is
    https://console.example:8443."""
    ca = CaSettings(key="pkcs11:token=x;object=y?pin-source=file:p", cert="c.pem")
    settings = ServerSettings(
        home=tmp_path,
        ca={"root": ca, "manufacturing": ca, "device": ca},
        store=StoreSettings(url=db_url),
        api=ApiSettings(public_url="https://console.example:8443"),
        operators=FAST_HASHES,
    )
    engine = create_engine(settings.store_url())
    migrate(engine)
    runtime = Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine))
    try:
        yield runtime
    finally:
        engine.dispose()
