"""Read queries page instead of stopping at the store's largest page (issue 10 section 4)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.services import queries
from trustfleet.store import MAX_LIST_LIMIT, UnitOfWork, create_engine, migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICES = MAX_LIST_LIMIT + 3
LAST = f"dev-{DEVICES - 1:08d}"  # past the first page of the store


@pytest.fixture
def rt(db_url: str) -> Iterator[Any]:
    """A runtime stand-in: the queries use only its unit of work."""
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        for n in range(DEVICES):
            tx.devices.add(id=f"dev-{n:08d}", model="m", state="enrolled", now=T0)
        tx.attestation.set_quarantine(LAST, at=T0, reason="tampered", by="test", release=None)
    yield SimpleNamespace(uow=uow)
    engine.dispose()


def test_device_pages_cover_every_device_and_say_when_more_exist(rt: Any) -> None:
    first = queries.list_devices(rt, limit=MAX_LIST_LIMIT)
    assert len(first.items) == MAX_LIST_LIMIT and first.next_cursor is not None
    rest = queries.list_devices(rt, limit=MAX_LIST_LIMIT, cursor=first.next_cursor)
    assert rest.next_cursor is None
    ids = [d.id for d in (*first.items, *rest.items)]
    assert ids == [f"dev-{n:08d}" for n in range(DEVICES)]


def test_an_exact_last_page_has_no_next_cursor(rt: Any) -> None:
    page = queries.list_devices(rt, limit=3, cursor=str(DEVICES - 3))
    assert [d.id for d in page.items][-1] == LAST and page.next_cursor is None


@pytest.mark.parametrize("cursor", ["-1", "x", "1" * 20, "\uff11"])
def test_a_cursor_no_page_gave_out_is_refused(rt: Any, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        queries.list_devices(rt, limit=10, cursor=cursor)


def test_attestation_overview_reads_every_page_of_candidates(rt: Any) -> None:
    page = queries.attestation_overview(rt, only_quarantined=False, limit=10)
    assert [r.device_id for r in page.items] == [LAST]  # the others have no AK
    assert page.items[0].quarantine is not None and page.next_cursor is None
    only = queries.attestation_overview(rt, only_quarantined=True, limit=10)
    assert [r.device_id for r in only.items] == [LAST]


def test_campaign_and_release_lists_page_when_empty(rt: Any) -> None:
    assert queries.list_campaigns(rt, limit=5) == queries.Page(())
    assert queries.list_releases(rt, model="m", limit=5) == queries.Page(())


def test_missing_records_raise_not_found(rt: Any) -> None:
    with pytest.raises(NotFound):
        queries.published_release(rt, model="m", version="1.0.0")
    with pytest.raises(NotFound):
        queries.device_detail(rt, "dev-nosuch")
    detail = queries.device_detail(rt, LAST)
    assert detail.device.id == LAST and detail.certificates == ()
