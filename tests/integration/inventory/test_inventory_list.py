"""list_inventory against a real store: every filter, every sort, paging, bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from inventorykit import BY_ID, FLEET, NOW, Dev, Fleet

from trustfleet.errors import InvalidInput
from trustfleet.services.inventory import (
    INVENTORY_SORTS,
    InventoryFilter,
    InventoryRow,
    list_inventory,
)
from trustfleet.store import MAX_LIST_LIMIT


def _all(fleet: Fleet, *, sort: str = "id", limit: int = 100, **filters: Any) -> list[InventoryRow]:
    rows: list[InventoryRow] = []
    cursor = None
    while True:
        page = list_inventory(
            fleet.rt, filters=InventoryFilter(**filters), sort=sort, limit=limit,
            cursor=cursor, now=NOW,
        )  # fmt: skip
        rows += page.items
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


SOON = NOW + timedelta(days=7)
FILTERS: dict[str, tuple[dict[str, Any], Any]] = {
    "state": ({"state": "enrolled"}, lambda d: d.state == "enrolled"),
    "model": ({"model": "m2"}, lambda d: d.model == "m2"),
    "firmware": ({"firmware_version": "1.1"}, lambda d: d.firmware == "1.1"),
    "online": ({"online": True}, lambda d: d.online),
    "offline": ({"online": False}, lambda d: not d.online),
    "quarantined": ({"quarantined": True}, lambda d: d.quarantined),
    "not-quarantined": ({"quarantined": False}, lambda d: not d.quarantined),
    "attestation-ok": ({"attestation": "ok"}, lambda d: d.attestation == "ok"),
    "attestation-failed": ({"attestation": "failed"}, lambda d: d.attestation == "failed"),
    "attestation-none": ({"attestation": "none"}, lambda d: d.attestation == "none"),
    "expires-within-7d": (
        {"cert_expires_before": SOON},
        lambda d: d.cert_not_after is not None and d.cert_not_after < SOON,
    ),
    "search": ({"search": "a000"}, lambda d: "a000" in d.id),
    "search-ignores-case": ({"search": "A0000"}, lambda d: "a0000" in d.id),
    "search-percent-is-literal": ({"search": "100%"}, lambda d: d.id == "dev-100%"),
    "search-underscore-is-literal": ({"search": "v_u"}, lambda d: d.id == "dev_under1"),
    "combined": (
        {"state": "enrolled", "online": True, "model": "m3"},
        lambda d: d.state == "enrolled" and d.online and d.model == "m3",
    ),
}


@pytest.mark.parametrize(("filters", "wanted"), FILTERS.values(), ids=FILTERS.keys())
def test_each_filter_selects_exactly_its_devices(
    fleet: Fleet, filters: dict[str, Any], wanted: Any
) -> None:
    expected = sorted(d.id for d in FLEET if wanted(d))
    assert expected, "each case selects at least one device"
    assert [r.device.id for r in _all(fleet, **filters)] == expected


def test_rows_carry_what_the_store_holds(fleet: Fleet) -> None:
    for row in _all(fleet):
        dev = BY_ID[row.device.id]
        assert row.online == dev.online, dev.id
        assert row.cert_not_after == dev.cert_not_after, dev.id
        assert row.quarantined == dev.quarantined, dev.id
        assert row.device.last_seen_at == dev.last_seen, dev.id
        assert row.device.firmware_version == dev.firmware, dev.id
        want = {"ok": True, "failed": False, "none": None}[dev.attestation]
        assert row.attestation_ok is want, dev.id
        assert (row.attested_at is None) == (dev.attestation == "none"), dev.id
        assert row.slot is None


def _key(sort: str) -> Any:
    far = datetime.max.replace(tzinfo=NOW.tzinfo)

    def by(value: Any, dev: Dev, *, descending: bool) -> tuple[Any, ...]:
        if value is None:  # nulls last in both directions
            return (1, 0, dev.id)
        if isinstance(value, datetime):
            value = (far - value) if descending else (value - NOW)
        elif descending:
            raise AssertionError("only times sort descending")
        return (0, value, dev.id)

    name, descending = sort.lstrip("-"), sort.startswith("-")
    pick = {
        "last_seen": lambda d: d.last_seen,
        "cert_expiry": lambda d: d.cert_not_after,
        "state": lambda d: d.state,
        "model": lambda d: d.model,
    }[name]
    return lambda d: by(pick(d), d, descending=descending)


@pytest.mark.parametrize("sort", INVENTORY_SORTS)
def test_each_sort_orders_the_whole_fleet_with_ties_by_id(fleet: Fleet, sort: str) -> None:
    if sort in ("id", "-id"):
        expected = sorted(BY_ID, reverse=sort == "-id")
    else:
        expected = [d.id for d in sorted(FLEET, key=_key(sort))]
    assert [r.device.id for r in _all(fleet, sort=sort, limit=2)] == expected


def test_pages_cover_the_fleet_once_and_end(fleet: Fleet) -> None:
    first = list_inventory(fleet.rt, filters=InventoryFilter(), limit=4, cursor=None, now=NOW)
    assert (len(first.items), first.next_cursor) == (4, "4")
    exact = list_inventory(
        fleet.rt, filters=InventoryFilter(), limit=len(FLEET), cursor=None, now=NOW
    )
    assert exact.next_cursor is None
    assert [r.device.id for r in _all(fleet, limit=3)] == sorted(BY_ID)


BAD: dict[str, dict[str, Any]] = {
    "sort": {"sort": "name"},
    "limit-0": {"limit": 0},
    "limit-over": {"limit": MAX_LIST_LIMIT + 1},
    "cursor": {"cursor": "-1"},
    "state": {"filters": InventoryFilter(state="lost")},
    "attestation": {"filters": InventoryFilter(attestation="maybe")},  # type: ignore[arg-type]
    "naive": {"filters": InventoryFilter(cert_expires_before=datetime(2026, 1, 1))},
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_bad_input_is_refused_with_a_code(fleet: Fleet, bad: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"filters": InventoryFilter(), "limit": 10, "cursor": None, **bad}
    with pytest.raises(InvalidInput) as caught:
        list_inventory(fleet.rt, now=NOW, **kwargs)
    assert caught.value.code
