"""Pure registration rules: query parsing, lifetime clamp, object links, the bounded table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from trustfleet.lwm2m.registration import (
    LifetimeBounds,
    RegistrationTable,
    clamp_lifetime,
    expiry_grace_s,
    location_of,
    new_location,
    object_paths,
    parse_register_query,
    parse_update_query,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BOUNDS = LifetimeBounds(min_s=30, max_s=86_400, default_s=300)


def test_register_query_defaults_and_values() -> None:
    q = parse_register_query(["ep=dev-00000001", "lt=120", "lwm2m=1.1", "b=U"])
    assert (q.endpoint, q.lifetime_s, q.lwm2m_version, q.binding) == (
        "dev-00000001",
        120,
        "1.1",
        "U",
    )
    q = parse_register_query(["ep=dev-00000001", "sms=123", "Q"])
    assert (q.lifetime_s, q.lwm2m_version, q.binding, q.queue_mode) == (None, "1.0", "U", True)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ([], "lwm2m.rd.ep"),
        (["ep="], "lwm2m.rd.ep"),
        (["ep=dev 1"], "lwm2m.rd.ep"),
        (["ep=" + "a" * 65], "lwm2m.rd.ep"),
        (["ep=dev-00000001", "ep=dev-00000002"], "lwm2m.rd.query"),
        (["ep=dev-00000001", "lt=-5"], "lwm2m.rd.lifetime"),
        (["ep=dev-00000001", "lt"], "lwm2m.rd.lifetime"),
        (["ep=dev-00000001", "lt=" + "9" * 11], "lwm2m.rd.lifetime"),
        (["ep=dev-00000001", "lt=١٢"], "lwm2m.rd.lifetime"),
        (["ep=dev-00000001", "lwm2m=2.0"], "lwm2m.rd.version"),
        (["ep=dev-00000001", "b=X"], "lwm2m.rd.binding"),
        ([f"x{i}=1" for i in range(17)], "lwm2m.rd.query"),
    ],
    ids=[
        "no-ep", "empty-ep", "space-in-ep", "long-ep", "repeated-ep", "negative-lt", "lt-no-value",
        "huge-lt", "non-ascii-digits", "unknown-version", "unknown-binding", "too-many-params",
    ],
)  # fmt: skip
def test_register_query_refused(query: list[str], code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_register_query(query)
    assert info.value.code == code


def test_update_query() -> None:
    assert parse_update_query([]).lifetime_s is None
    assert parse_update_query(["lt=60", "b=UQ", "other=1"]).binding == "UQ"
    with pytest.raises(InvalidInput):
        parse_update_query(["lt=x"])


@pytest.mark.parametrize(
    ("requested", "granted"), [(None, 300), (1, 30), (30, 30), (600, 600), (10**9, 86_400)]
)
def test_lifetime_clamp(requested: int | None, granted: int) -> None:
    assert clamp_lifetime(requested, BOUNDS) == granted


def test_object_paths() -> None:
    links = ["/", "/0/0", "/1/0", "/3/0", "/3303", "/3303/0", "/3/0"]
    assert object_paths(links, max_links=10) == ("/1/0", "/3/0", "/3303", "/3303/0")


@pytest.mark.parametrize(
    "links",
    [["/a"], ["/3/0/1"], ["3/0"], ["/123456"]],
    ids=["alpha", "resource", "relative", "big"],
)
def test_object_paths_refused(links: list[str]) -> None:
    with pytest.raises(InvalidInput):
        object_paths(links, max_links=10)


def test_object_paths_bounded() -> None:
    with pytest.raises(InvalidInput):
        object_paths(["/3/0"] * 11, max_links=10)


def test_locations() -> None:
    location = new_location()
    assert location.startswith("rd/") and len(location) == 19
    assert location_of(tuple(location.split("/"))) == location
    assert location_of(("rd", "XYZ")) is None
    assert location_of(("rd",)) is None


def _table(max_registrations: int = 2) -> RegistrationTable:
    ids = iter(f"rd/{n:016x}" for n in range(100))
    return RegistrationTable(max_registrations=max_registrations, location=lambda: next(ids))


def _register(table: RegistrationTable, device: str, *, now: datetime = NOW) -> str:
    query = parse_register_query([f"ep={device}", "lt=60"])
    reg, _ = table.register(
        device_id=device, query=query, objects=("/3/0",), lifetime_s=60,
        address="127.0.0.1:1", mode="psk", now=now,
    )  # fmt: skip
    return reg.location


def test_table_register_update_remove() -> None:
    table = _table()
    first = _register(table, "dev-00000001")
    again = _register(table, "dev-00000001")
    assert first != again and len(table) == 1
    with pytest.raises(NotFound):
        table.owned(first, device_id="dev-00000001")
    other = _register(table, "dev-00000002")
    with pytest.raises(PermissionDenied):
        table.owned(other, device_id="dev-00000001")
    with pytest.raises(Unavailable):
        _register(table, "dev-00000003")
    current, previous = table.update(
        again, device_id="dev-00000001", lifetime_s=None, binding=None, objects=None,
        address="127.0.0.1:2", now=NOW + timedelta(seconds=10),
    )  # fmt: skip
    assert current.lifetime_s == previous.lifetime_s and current.address == "127.0.0.1:2"
    assert table.remove("dev-00000001") is not None and table.at(again) is None


def test_table_expiry() -> None:
    table = _table()
    _register(table, "dev-00000001")
    grace = expiry_grace_s(ack_timeout_s=2.0, max_retransmit=4)
    assert grace == 93.0
    assert table.expired(now=NOW + timedelta(seconds=60 + grace), grace_s=grace) == []
    expired = table.expired(now=NOW + timedelta(seconds=61 + grace), grace_s=grace)
    assert [r.device_id for r in expired] == ["dev-00000001"]
