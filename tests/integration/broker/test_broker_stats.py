"""Issue 13 §1: the guard plugin counts what the broker sees of each device and publishes it.

A real Mosquitto with the guard (stats every second, ``counted``); devices act through
Mosquitto's own clients. A service identity reads ``tf/v1/s/broker/stats``; the chunks are
decoded with the service's own parser and summed per device until the expected activity is
there, then compared exactly. A device can never subscribe to the statistics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from brokerkit_fixtures import Fleet, Mqtt, Subscriber

from support.identities import Identity
from support.waiting import wait_for
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.service_window import (
    BrokerCounters,
    BrokerStats,
    decode_broker_stats,
    merge_counters,
)
from trustfleet.wire import (
    BROKER_STATS_TOPIC,
    DEVICE_ID_PATTERN,
    MAX_BROKER_STATS_BYTES,
    device_topic,
)

NOT_AUTHORIZED = 135
REFUSED_V311 = 128


class StatsReader:
    """Reads a service's mosquitto_sub output in a thread; decodes every chunk."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.chunks: list[BrokerStats] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.sub.proc.stdout is not None
        prefix = BROKER_STATS_TOPIC + " "
        for line in self.sub.proc.stdout:
            if line.startswith(prefix):
                payload = line[len(prefix) :].strip().encode()
                self.chunks.append(
                    decode_broker_stats(
                        payload,
                        max_bytes=MAX_BROKER_STATS_BYTES,
                        device_id_pattern=DEVICE_ID_PATTERN,
                    )
                )

    def of(self, device_id: str) -> BrokerCounters:
        """The device's counters summed so far (zero before its first chunk)."""
        return self.totals().get(device_id, BrokerCounters())

    def totals(self) -> dict[str, BrokerCounters]:
        found: dict[str, BrokerCounters] = {}
        for chunk in list(self.chunks):
            for device_id, counters in chunk.devices.items():
                seen = found.get(device_id)
                found[device_id] = counters if seen is None else merge_counters(seen, counters)
        return found


@contextmanager
def _stats(fleet: Fleet, mqtt: Mqtt) -> Iterator[StatsReader]:
    sub = mqtt.sub(fleet.service, [BROKER_STATS_TOPIC], count=1000, wait_s=60, v5=True)
    try:
        assert sub.wait_subscribed(), sub.finish()
        assert sub.granted == [1], sub.lines
        yield StatsReader(sub)
    finally:
        sub.close()


@contextmanager
def _session(mqtt: Mqtt, device: Identity, topic: str) -> Iterator[Callable[[str], None]]:
    """One connected session of ``device`` publishing each line given to the yielded function
    on ``topic``; it disconnects when the block ends."""
    stream = mqtt.pub_stream(device, topic)
    assert stream.stdin is not None
    stdin = stream.stdin

    def send(line: str) -> None:
        stdin.write(line + "\n")
        stdin.flush()

    try:
        yield send
    finally:
        stdin.close()
        stream.wait(timeout=20)


def test_device_activity_is_counted_and_published(fleet: Fleet, cmqtt: Mqtt) -> None:
    """Publishes (count and bytes), a denied publish, a denied subscription to the statistics
    themselves, a refused CONNECT (wrong client id), connects and disconnects, the source
    address: each appears in the device's counters, exactly once."""
    a, b = fleet.a.name, fleet.b.name
    lines = ["0123456789", "abcdefghij", "klmnopqrst"]
    with _stats(fleet, cmqtt) as reader:
        telemetry = device_topic(a, "telemetry")
        result = cmqtt.pub(fleet.a, telemetry, "", stdin="\n".join(lines) + "\n", extra=("-l",))
        assert result.returncode == 0, result.stderr
        assert cmqtt.pub(fleet.a, device_topic(b, "telemetry"), "stolen").returncode == 0
        spy = cmqtt.sub(fleet.a, [BROKER_STATS_TOPIC], count=1, wait_s=2)
        try:
            assert spy.wait_subscribed(), spy.finish()
            assert spy.granted == [REFUSED_V311], spy.lines
            assert f"{BROKER_STATS_TOPIC} {{" not in spy.finish()  # no chunk delivered
        finally:
            spy.close()
        refused = cmqtt.pub(fleet.b, device_topic(b, "telemetry"), "x", client_id="not-b-client-id")
        assert refused.returncode != 0

        def settled() -> bool:
            totals = reader.totals()
            return (
                totals.get(a, BrokerCounters()).disconnects >= 3
                and totals.get(b, BrokerCounters()).refusals >= 1
            )

        wait_for(settled, what="device A's three sessions and B's refusal counted")
    totals = reader.totals()
    assert totals[a] == BrokerCounters(
        connects=3,
        refusals=0,
        disconnects=3,
        denied=2,  # the publish to B's topic, the subscription to the statistics
        messages=4,
        bytes=sum(map(len, lines)) + len("stolen"),
        addresses=frozenset({"127.0.0.1"}),
    )
    assert totals[b] == BrokerCounters(connects=1, refusals=1, addresses=frozenset({"127.0.0.1"}))
    assert all(chunk.interval_s == 1 for chunk in reader.chunks)
    assert len({chunk.boot for chunk in reader.chunks}) == 1


def test_nobody_but_the_broker_publishes_statistics(fleet: Fleet, cmqtt: Mqtt) -> None:
    """A forged chunk from a device (denied by the guard, and counted) or from a service
    identity (the ACL file grants it read only) never reaches a reader of the statistics."""
    a = fleet.a.name
    forged = (
        '{"v":1,"boot":"%s","seq":1,"part":0,"end":0,"interval_s":1,"untracked":0,'
        '"unattributed":0,"devices":{}}'
    )
    with _stats(fleet, cmqtt) as reader:
        assert cmqtt.pub(fleet.a, BROKER_STATS_TOPIC, forged % "forgeddevice").returncode == 0
        assert (
            cmqtt.pub(fleet.service, BROKER_STATS_TOPIC, forged % "forgedservice").returncode == 0
        )
        wait_for(
            lambda: reader.of(a).denied >= 1,
            what="the device's forged publish counted as denied",
        )
        assert cmqtt.pub(fleet.a, device_topic(a, "telemetry"), "after").returncode == 0
        wait_for(
            lambda: reader.of(a).disconnects >= 2,
            what="both of A's sessions counted (the forged chunks had their chance)",
        )
    assert not [c for c in reader.chunks if c.boot.startswith("forged")]


def test_a_reload_does_not_count_connected_devices_again(
    fleet: Fleet, cmqtt: Mqtt, counted: object
) -> None:
    """A CRL reload (SIGHUP) re-authenticates every connected client: not a new CONNECT."""
    a = fleet.a.name
    with _stats(fleet, cmqtt) as reader:
        with _session(cmqtt, fleet.a, device_topic(a, "telemetry")) as send:
            send("first")
            wait_for(lambda: reader.of(a).messages >= 1, what="the first message counted")
            counted.reload_crl(fleet.device_crl())  # type: ignore[attr-defined]
            send("second")
            wait_for(lambda: reader.of(a).messages >= 2, what="the second message counted")
        wait_for(
            lambda: reader.of(a).disconnects >= 1,
            what="the disconnect counted",
        )
    totals = reader.totals()[a]
    assert (totals.connects, totals.disconnects, totals.messages) == (1, 1, 2)


def test_the_running_server_stores_the_broker_s_counters_as_service_windows(
    fleet: Fleet,
) -> None:
    """End to end: the server's own broker publishes, its ingest workers (sharing
    ``$share/ingest/tf/v1/s/broker/stats``) store ``source="service"`` windows that end on
    ``service_window_s`` boundaries."""
    from trustfleet.settings import load_server_settings

    settings = load_server_settings(fleet.server.home)
    server_mqtt = Mqtt(fleet, settings.broker.port)
    device = fleet.new_device("sig")
    topic = device_topic(device.name, "telemetry")
    sent = server_mqtt.pub(device, topic, "", stdin="one\ntwo\nthree\n", extra=("-l",))
    assert sent.returncode == 0, sent.stderr
    rt = fleet.server.runtime

    def windows() -> list[MetricsRecord] | None:
        with rt.uow.begin(read_only=True) as tx:
            mine = [
                r
                for _, r in tx.monitor_metrics.after(0, limit=1000)
                if r.device_id == device.name and r.source == "service"
            ]
        total = sum(r.numbers["svc-disconnects"] for r in mine)
        return mine if total >= 1 else None

    found = wait_for(windows, what="the device's service windows from the running server")
    assert sum(r.numbers["svc-messages-in"] for r in found) == 3
    assert sum(r.numbers["svc-bytes-in"] for r in found) == len("onetwothree")
    assert sum(r.numbers["svc-connect-attempts"] for r in found) == 1
    assert all(r.interval_s == 1 and r.end.microsecond == 0 for r in found)
    addresses = frozenset().union(*(r.sets["svc-source-addresses"] for r in found))
    assert addresses == {"127.0.0.1"}


def test_a_full_table_counts_newcomers_as_untracked(fleet: Fleet, one_slot: object) -> None:
    """The table is bounded: while A holds the one slot (connected), B's activity is only
    counted as ``untracked``, and B never appears in a chunk."""
    mqtt = Mqtt(fleet, one_slot.config.port)  # type: ignore[attr-defined]
    a, b = fleet.a.name, fleet.b.name
    with (
        _stats(fleet, mqtt) as reader,
        _session(mqtt, fleet.a, device_topic(a, "telemetry")) as send,
    ):
        send("hello")
        wait_for(lambda: reader.of(a).messages >= 1, what="A counted")
        assert mqtt.pub(fleet.b, device_topic(b, "telemetry"), "x").returncode == 0
        wait_for(
            lambda: sum(c.untracked for c in reader.chunks) >= 3,
            what="B's connect, publish and disconnect counted as untracked",
        )
    assert b not in reader.totals()
