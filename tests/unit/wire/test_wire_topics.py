"""``trustfleet.wire`` topics: builders and parsers round-trip, hostile ids never escape."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet import wire
from trustfleet.errors import InvalidInput

DEVICE_IDS = st.from_regex(r"[a-z0-9-]{8,64}", fullmatch=True)
KINDS = st.sampled_from(wire.TOPIC_KINDS)


@given(device_id=DEVICE_IDS, kind=KINDS)
def test_device_topic_round_trips(device_id: str, kind: str) -> None:
    topic = wire.device_topic(device_id, kind)
    assert topic == f"tf/v1/d/{device_id}/{kind}"
    assert wire.parse_device_topic(topic) == (device_id, kind)
    assert wire.topic_device(topic) == device_id


@given(text=st.text(max_size=80))
def test_parse_never_raises_and_only_returns_contract_topics(text: str) -> None:
    parsed = wire.parse_device_topic(text)
    if parsed is not None:
        assert wire.device_topic(*parsed) == text


HOSTILE_IDS = {
    "empty": "",
    "slash": "dev-0001/../dev-0002",
    "plus": "+",
    "hash": "#",
    "wildcard-inside": "dev-000+1",
    "nul": "dev-0001\x00x",
    "upper": "DEV-00001",
    "short": "dev-1",
    "too-long": "d" * 65,
    "share": "$share/x",
    "newline": "dev-00001\n",
    "non-ascii": "dév-00001",
    "dot": "dev.00001",
}


@pytest.mark.parametrize("device_id", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_hostile_device_ids_are_refused_by_every_builder(device_id: str) -> None:
    with pytest.raises(InvalidInput) as err:
        wire.device_topic(device_id, "cmd")
    assert err.value.code == "mqtt.device_id"
    with pytest.raises(InvalidInput):
        wire.device_filter(device_id if device_id != "+" else "++")
    assert wire.parse_device_topic(f"tf/v1/d/{device_id}/cmd") is None
    assert wire.topic_device(f"tf/v1/d/{device_id}/cmd") != device_id


@given(device_id=st.text(max_size=70).filter(lambda t: not re.fullmatch(r"[a-z0-9-]{8,64}", t)))
def test_any_non_device_id_is_refused(device_id: str) -> None:
    with pytest.raises(InvalidInput):
        wire.device_topic(device_id, "telemetry")


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("tf/v2/d/dev-00001/telemetry", id="other-root"),
        pytest.param("tf/v1/d/dev-00001", id="no-kind"),
        pytest.param("tf/v1/d/dev-00001/", id="empty-kind"),
        pytest.param("tf/v1/d/dev-00001/shell", id="unknown-kind"),
        pytest.param("tf/v1/d/dev-00001/cmd/result/x", id="kind-prefix"),
        pytest.param("/tf/v1/d/dev-00001/cmd", id="leading-slash"),
        pytest.param("$share/ingest/tf/v1/d/+/telemetry", id="shared"),
    ],
)
def test_topics_outside_the_contract_do_not_parse(topic: str) -> None:
    assert wire.parse_device_topic(topic) is None


def test_topic_device_accepts_any_leaf_in_the_namespace_only() -> None:
    assert wire.topic_device("tf/v1/d/dev-00001/anything/below") == "dev-00001"
    assert wire.topic_device("tf/v1/d/dev-00001/") is None
    assert wire.topic_device("tf/v1/d/dev-00001") is None
    assert wire.topic_device("tf/v1/x/dev-00001/cmd") is None


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        wire.device_topic("dev-00001", "shell")
    assert err.value.code == "mqtt.topic"


def test_directions_partition_the_kinds() -> None:
    assert set(wire.DEVICE_TO_SERVICE) | set(wire.SERVICE_TO_DEVICE) == set(wire.TOPIC_KINDS)
    assert not set(wire.DEVICE_TO_SERVICE) & set(wire.SERVICE_TO_DEVICE)
    assert set(wire.INGEST_KINDS) <= set(wire.DEVICE_TO_SERVICE)
    assert "attest/evidence" in wire.DEVICE_TO_SERVICE and "ota/cmd" in wire.SERVICE_TO_DEVICE


def test_shared_filters_of_the_worker_groups() -> None:
    assert wire.shared_filters(wire.INGEST_GROUP) == (
        "$share/ingest/tf/v1/d/+/telemetry",
        "$share/ingest/tf/v1/d/+/events",
        "$share/ingest/tf/v1/d/+/cmd/result",
        "$share/ingest/tf/v1/d/+/ota/status",
        "$share/ingest/tf/v1/d/+/attest/evidence",
        "$share/ingest/tf/v1/d/+/metrics",
    )
    assert wire.shared_filters(wire.ATTEST_GROUP) == ("$share/attest/tf/v1/d/+/events",)
    assert wire.device_filter("+") == "tf/v1/d/+/#"
    assert wire.device_filter("dev-00001") == "tf/v1/d/dev-00001/#"


@pytest.mark.parametrize("group", ["", "In", "a/b", "+", "#", "x" * 40], ids=repr)
def test_shared_filter_refuses_bad_groups(group: str) -> None:
    with pytest.raises(InvalidInput):
        wire.shared_filter(group, "telemetry")


def test_the_product_uses_the_wire_topics() -> None:
    from trustfleet.agent.link import topic
    from trustfleet.broker import DEVICE_TOPIC_ROOT
    from trustfleet.services.ingest import MESSAGE_KINDS, ingest_subscriptions

    assert DEVICE_TOPIC_ROOT == wire.DEVICE_TOPIC_ROOT
    assert topic("dev-00001", "telemetry") == wire.device_topic("dev-00001", "telemetry")
    assert MESSAGE_KINDS == wire.INGEST_KINDS
    assert ingest_subscriptions() == wire.shared_filters(wire.INGEST_GROUP)[:4]
