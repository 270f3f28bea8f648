"""docs/mqtt.md and the guard plugin's C source say what ``trustfleet.wire`` says."""

from __future__ import annotations

import re
from pathlib import Path

from trustfleet import wire

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
GUARD_C = ROOT / "src" / "trustfleet" / "broker" / "plugin" / "tf_guard.c"


def _topic_rows() -> dict[str, str]:
    """kind -> direction, from the table whose rows start with ``| `tf/v1/d/<id>/…` |``."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", DOC, flags=re.MULTILINE)
    found: dict[str, str] = {}
    for topic, direction in rows:
        match = re.fullmatch(r"(.+)/<id>/(.+)", topic)
        if match:
            assert match.group(1) == wire.DEVICE_TOPIC_ROOT, topic
            found[match.group(2)] = direction.strip()
    return found


def test_every_topic_in_the_doc_is_the_code_s_and_back() -> None:
    rows = _topic_rows()
    assert sorted(rows) == sorted(wire.TOPIC_KINDS)
    for kind, direction in rows.items():
        expected = "device → service" if kind in wire.DEVICE_TO_SERVICE else "service → device"
        assert direction == expected, kind


def test_the_doc_names_the_device_namespace() -> None:
    assert f"Every device lives under `{wire.DEVICE_TOPIC_ROOT}/<device-id>/`" in DOC


def test_shared_subscriptions_in_the_doc_are_the_code_s() -> None:
    block = re.search(r"```text\n(\$share/.*?)```", DOC, flags=re.DOTALL)
    assert block is not None, "docs/mqtt.md lists the shared subscriptions in a ```text block"
    listed = block.group(1).split()
    code = [f for group in wire.SHARED_SUBSCRIPTIONS for f in wire.shared_filters(group)]
    assert listed == code


def test_limits_in_the_doc_are_the_code_s() -> None:
    rows = dict(re.findall(r"^\| `(MAX_[A-Z_]+)` \| (\d+) \|", DOC, flags=re.MULTILINE))
    assert {name: int(value) for name, value in rows.items()} == dict(wire.LIMITS)


def test_every_wire_limit_is_in_the_limits_mapping() -> None:
    named = {name for name in wire.__all__ if name.startswith("MAX_")}
    assert named == set(wire.LIMITS)
    assert all(getattr(wire, name) == value for name, value in wire.LIMITS.items())


def test_guard_plugin_prefix_is_wire_s() -> None:
    source = GUARD_C.read_text(encoding="utf-8")
    match = re.search(r'^#define TF_PREFIX "([^"]*)"', source, flags=re.MULTILINE)
    assert match is not None
    assert match.group(1) == wire.DEVICE_TOPIC_ROOT + "/"
    min_id = re.search(r"^#define TF_MIN_DEVICE_ID (\d+)", source, flags=re.MULTILINE)
    max_id = re.search(r"^#define TF_MAX_ID (\d+)", source, flags=re.MULTILINE)
    assert min_id and max_id
    assert wire.DEVICE_ID_PATTERN.pattern.endswith(f"{{{min_id.group(1)},{max_id.group(1)}}}")


def test_every_topic_mentioned_in_the_doc_is_one_the_code_builds() -> None:
    placeholders = r"<id>|<its id>|<device-id>|\+"
    sample = "dev-00001"
    for text in set(re.findall(r"`((?:\$share/<group>/)?tf/v1[^`]*)`", DOC)):
        if text.startswith(wire.SERVICE_TOPIC_ROOT + "/"):
            assert text == wire.BROKER_STATS_TOPIC, text  # the one service topic
            continue
        body = re.sub(r"^\$share/<group>/", "", text)
        head, _, leaf = re.sub(placeholders, sample, body, count=1).partition(f"/{sample}/")
        assert head == wire.DEVICE_TOPIC_ROOT, text
        if leaf in ("", "…", "<kind>"):
            continue
        if leaf.endswith("/#"):
            assert any(kind.startswith(leaf[:-1]) for kind in wire.TOPIC_KINDS), text
        else:
            assert wire.parse_device_topic(wire.device_topic(sample, leaf)) == (sample, leaf), text


def test_broker_stats_topic_is_wire_s_in_the_plugin_and_the_doc() -> None:
    source = (GUARD_C.parent / "tf_stats.c").read_text(encoding="utf-8")
    match = re.search(r'^#define TF_STATS_TOPIC "([^"]*)"', source, flags=re.MULTILINE)
    assert match is not None
    assert match.group(1) == wire.BROKER_STATS_TOPIC
    assert f"`{wire.BROKER_STATS_FILTER}`" in DOC
    assert f"## Broker statistics (service topic `{wire.BROKER_STATS_TOPIC}`)" in DOC
