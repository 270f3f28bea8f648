"""Device commands in a real store: the row and the event, publish failures, stored answers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from inventorykit import NOW, Fleet

from trustfleet.audit.context import event_context
from trustfleet.errors import Conflict, InvalidInput, NotFound, Unavailable
from trustfleet.services.commands import (
    get_device_command,
    list_device_commands,
    send_device_command,
)
from trustfleet.services.ingest import parse_message, store_batch
from trustfleet.settings import ServerSettings

DEV, OTHER = "dev-a0000001", "dev-a0000002"
ACTOR = "operator:alice"


class Broker:
    """Stands in for the service's MQTT publish: records what it was given, or fails."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, dict[str, object]]] = []

    def __call__(self, settings: ServerSettings, topic: str, payload: bytes, what: str) -> None:
        if self.fail:
            raise Unavailable("no broker", code="mqtt.unavailable")
        self.sent.append((topic, json.loads(payload)))


def _send(fleet: Fleet, broker: Broker, device: str = DEV, name: str = "ping"):  # type: ignore[no-untyped-def]
    with event_context(origin="test", operator=ACTOR):
        return send_device_command(fleet.rt, device, name, {}, now=NOW, publish=broker)  # type: ignore[arg-type]


def _answer(fleet: Fleet, device: str, command_id: str, *, at_s: float = 1) -> int:
    body = {"ts": "2026-03-01T12:30:01Z", "seq": 1, "id": command_id, "ok": True,
            "result": {"pong": True}}  # fmt: skip
    message = parse_message(f"tf/v1/d/{device}/cmd/result", json.dumps(body).encode(), now=NOW)
    return store_batch(fleet.uow, [message], now=NOW + timedelta(seconds=at_s)).commands_answered


def test_a_command_is_recorded_with_its_event_then_published_under_the_row_id(
    fleet: Fleet,
) -> None:
    broker = Broker()
    record = _send(fleet, broker)
    ((topic, payload),) = broker.sent
    assert topic == f"tf/v1/d/{DEV}/cmd"
    assert payload == {"id": record.id, "name": "ping", "args": {}}
    assert (record.state, record.actor, record.sent_at) == ("sent", ACTOR, NOW)
    with fleet.uow.begin(read_only=True) as tx:
        (event,) = tx.events.page(types=("device.command",))
    assert (event.actor, event.subject) == (ACTOR, f"device:{DEV}")
    assert event.details == {"command": record.id, "name": "ping"}


def test_the_device_answer_is_stored_once_and_only_from_that_device(fleet: Fleet) -> None:
    record = _send(fleet, Broker(), name="report")
    assert _answer(fleet, OTHER, record.id) == 0  # another device cannot answer it
    assert get_device_command(fleet.rt, record.id).state == "sent"
    assert _answer(fleet, DEV, record.id) == 1
    assert _answer(fleet, DEV, record.id, at_s=5) == 0  # nor can it be answered twice
    answered = get_device_command(fleet.rt, record.id)
    assert (answered.state, answered.ok, answered.result) == ("answered", True, {"pong": True})
    assert answered.answered_at == NOW + timedelta(seconds=1)


def test_a_failed_publish_marks_the_row_failed_and_raises(fleet: Fleet) -> None:
    with pytest.raises(Unavailable):
        _send(fleet, Broker(fail=True))
    (failed,) = list_device_commands(fleet.rt, DEV, limit=10).items
    assert failed.state == "failed" and failed.result == {"error": "no broker"}
    assert _answer(fleet, DEV, failed.id) == 0


def test_commands_are_refused_for_unknown_devices_unenrolled_ones_and_unknown_names(
    fleet: Fleet,
) -> None:
    broker = Broker()
    with pytest.raises(NotFound):
        _send(fleet, broker, device="dev-nope0001")
    with pytest.raises(Conflict) as caught:
        _send(fleet, broker, device="dev-b0000004")  # manufactured
    assert caught.value.code == "command.not_enrolled"
    with pytest.raises(InvalidInput) as bad:
        _send(fleet, broker, name="update")
    assert bad.value.code == "command.unknown"
    assert broker.sent == []
    with pytest.raises(NotFound):
        get_device_command(fleet.rt, "no-such-command")


def test_a_device_commands_are_listed_newest_first_in_pages(fleet: Fleet) -> None:
    ids = [_send(fleet, Broker()).id for _ in range(3)]
    first = list_device_commands(fleet.rt, DEV, limit=2)
    rest = list_device_commands(fleet.rt, DEV, limit=2, cursor=first.next_cursor)
    assert rest.next_cursor is None
    assert sorted(c.id for c in first.items + rest.items) == sorted(ids)
    with pytest.raises(NotFound):
        list_device_commands(fleet.rt, "dev-nope0001", limit=2)
