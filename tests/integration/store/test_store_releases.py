"""The releases repository on SQLite and PostgreSQL: versions sort as versions, not as text."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.store import UnitOfWork


def _add(uow: UnitOfWork, now: datetime, *, version: str, model: str = "sim-v1") -> int:
    with uow.begin() as tx:
        return tx.releases.add(
            model=model,
            version=version,
            min_version="1.0.0",
            image_sha256=hashlib.sha256(version.encode()).hexdigest(),
            image_length=1024,
            manifest=b'{"version":"' + version.encode() + b'"}',
            targets_version=2,
            now=now,
        ).id


def test_versions_sort_numerically_and_newest_id_follows_publishing(
    uow: UnitOfWork, now: datetime
) -> None:
    with uow.begin(read_only=True) as tx:
        assert tx.releases.newest_id("sim-v1") is None
        assert tx.releases.latest("sim-v1") is None
    first = _add(uow, now, version="1.9.0")
    second = _add(uow, now, version="1.10.0")
    _add(uow, now, version="9.0.0", model="other-v1")
    with uow.begin(read_only=True) as tx:
        assert [r.version for r in tx.releases.list(model="sim-v1")] == ["1.10.0", "1.9.0"]
        latest = tx.releases.latest("sim-v1")
        assert latest is not None and latest.version == "1.10.0"
        assert tx.releases.newest_id("sim-v1") == second != first
        got = tx.releases.get(model="sim-v1", version="1.9.0")
        assert got is not None and got.manifest == b'{"version":"1.9.0"}'
        assert tx.releases.get(model="sim-v1", version="9.0.0") is None


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "1." + "9" * 10 + ".0"])
def test_malformed_versions_are_refused(uow: UnitOfWork, now: datetime, version: str) -> None:
    with pytest.raises(InvalidInput):
        _add(uow, now, version=version)


def test_a_version_is_published_once(uow: UnitOfWork, now: datetime) -> None:
    _add(uow, now, version="2.0.0")
    with pytest.raises(Conflict):
        _add(uow, now, version="2.0.0")
