"""The inventory's and the commands' input checks, before any store is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from trustfleet.cli.device import _duration, _within
from trustfleet.errors import InvalidInput
from trustfleet.services.commands import send_device_command
from trustfleet.services.ingest import command_result, parse_message
from trustfleet.services.inventory import InventoryFilter, list_events, list_inventory
from trustfleet.services.runtime import Runtime
from trustfleet.store import MAX_COMMAND_RESULT_BYTES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _NoStore:
    def begin(self, **_: Any) -> Any:
        raise AssertionError("the store must not be reached")


RT = cast(
    Runtime,
    SimpleNamespace(
        uow=_NoStore(), settings=SimpleNamespace(api=SimpleNamespace(online_window_s=120.0))
    ),
)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sort": "name"}, "query.bad_sort"),
        ({"filters": InventoryFilter(state="lost")}, "query.bad_state"),
        ({"filters": InventoryFilter(attestation="maybe")}, "query.bad_attestation"),  # type: ignore[arg-type]
        ({"limit": 0}, "query.bad_limit"),
        ({"cursor": "x"}, "query.bad_cursor"),
    ],
)
def test_bad_inventory_input_is_refused_with_its_code(kwargs: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {"filters": InventoryFilter(), "limit": 10, "cursor": None, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        list_inventory(RT, now=NOW, **args)
    assert caught.value.code == code


def test_bad_event_sort_and_outcome_are_refused() -> None:
    for kwargs in ({"sort": "time"}, {"outcome": "maybe"}):
        with pytest.raises(InvalidInput):
            list_events(RT, limit=10, **kwargs)  # type: ignore[arg-type]


def test_only_ping_and_report_are_operator_commands() -> None:
    with pytest.raises(InvalidInput) as caught:
        send_device_command(RT, "dev-00000001", "update", {}, now=NOW)  # type: ignore[arg-type]
    assert caught.value.code == "command.unknown"


def test_a_result_keeps_its_object_and_its_error_text() -> None:
    assert command_result({"id": "c", "ok": True, "result": {"pong": True}}) == {"pong": True}
    assert command_result({"id": "c", "ok": False}) == {}
    assert command_result({"id": "c", "ok": False, "error": "busy"}) == {"error": "busy"}


@pytest.mark.parametrize(
    "body",
    [
        {"ok": True},
        {"id": 3, "ok": True},
        {"id": "x" * 65, "ok": True},
        {"id": "c", "ok": "yes"},
        {"id": "c", "ok": True, "result": [1]},
        {"id": "c", "ok": True, "error": 7},
        {"id": "c", "ok": True, "result": {"pad": "x" * MAX_COMMAND_RESULT_BYTES}},
    ],
)
def test_a_result_the_store_would_refuse_is_refused_alone(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        command_result(body)


def test_the_verifier_refuses_a_bad_result_before_it_joins_a_batch() -> None:
    payload = b'{"ts": "2026-03-01T12:00:00Z", "seq": 1, "id": "c", "ok": true, "result": 1}'
    with pytest.raises(InvalidInput) as caught:
        parse_message("tf/v1/d/dev-00000001/cmd/result", payload, now=NOW)
    assert caught.value.code == "ingest.field"


def test_expires_within_takes_days_or_hours() -> None:
    assert _within("7d") == timedelta(days=7)
    assert _within(" 12h ") == timedelta(hours=12)
    assert _within(None) is None
    for bad in ("7", "1w", "-1d", "d"):
        with pytest.raises(InvalidInput):
            _within(bad)


def test_wait_takes_seconds_and_minutes() -> None:
    assert _duration("10s", example="10s") == timedelta(seconds=10)
    assert _duration("2m", example="10s") == timedelta(minutes=2)
    with pytest.raises(InvalidInput) as caught:
        _duration("soon", example="10s")
    assert caught.value.hint == "use e.g. 10s"
