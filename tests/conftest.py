"""Fixtures shared by the whole test suite.

* ``postgres_cluster`` / ``postgres_url``: one throwaway PostgreSQL server per session
  (skipped when PostgreSQL is not installed, unless ``TF_REQUIRE_POSTGRES=1``).
* ``postgres_db_url``: a fresh, empty database on that server for one test.
* ``db_url``: each test once on a SQLite file and once on a fresh PostgreSQL database.
* ``asset``: the path of a recorded test vector under ``tests/vectors/``.
* ``vendor_ca``, ``manufactured_tpm``, ``other_manufactured_tpm``, ``swtpm``: software TPMs
  for the suites that run swtpm (the plugin support/swtpm.py).

Every test under ``tests/integration`` is marked ``integration`` and every test under
``tests/e2e`` is marked ``e2e`` by its path (``-m "not integration"`` selects the rest).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.postgres import PostgresCluster, PostgresUnavailable, running_cluster

pytest_plugins = ["support.swtpm"]

TESTS = Path(__file__).resolve().parent
VECTORS = TESTS / "vectors"
MARKERS_BY_FOLDER = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in: ``tests/integration``, ``tests/e2e``."""
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # collected from outside tests/
            continue
        marker = MARKERS_BY_FOLDER.get(folder)
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def asset() -> Callable[[str], Path]:
    """The path of a recorded test vector: ``asset("tpm/quote.bin")`` (tests/vectors/README.md)."""

    def find(name: str) -> Path:
        path = VECTORS / name
        if not path.is_file():
            raise FileNotFoundError(f"no test vector {name} under {VECTORS}")
        return path

    return find


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session, stopped and deleted afterwards."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except PostgresUnavailable as exc:
        if os.environ.get("TF_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"TF_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """SQLAlchemy URL of the session server's ``postgres`` database (superuser, trust auth)."""
    return postgres_cluster.url


@pytest.fixture
def postgres_db_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """SQLAlchemy URL of a new empty database, dropped after the test."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trustfleet.db'}"
    url: str = request.getfixturevalue("postgres_db_url")
    return url
