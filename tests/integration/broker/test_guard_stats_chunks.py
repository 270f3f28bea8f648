"""The guard's statistics table and chunking (``plugin/tf_stats.c``), compiled with the host's
gcc against Mosquitto's headers, with ``mosquitto_broker_publish_copy`` replaced by a stub that
writes each chunk to stdout: hundreds of devices split into chunks under the bound, each device
once, counters reset after a window, idle devices without a session evicted. (The real broker
path is tests/integration/broker/test_broker_stats.py; it never has enough devices to split.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from trustfleet.monitoring.service_window import decode_broker_stats
from trustfleet.wire import BROKER_STATS_TOPIC, DEVICE_ID_PATTERN

PLUGIN = Path(__file__).resolve().parents[3] / "src" / "trustfleet" / "broker" / "plugin"
MAX_BYTES = 2048
DEVICES = 300
CONNECTED = 5  # devices 0..4 keep a session

HARNESS = r"""
#include "tf_stats.c"
#include <stdarg.h>

int mosquitto_broker_publish_copy(const char *clientid, const char *topic, int len,
		const void *payload, int qos, bool retain, mosquitto_property *props)
{
	(void)clientid; (void)qos; (void)retain; (void)props;
	printf("%s %.*s\n", topic, len, (const char *)payload);
	return 0;
}

void mosquitto_log_printf(int level, const char *fmt, ...)
{
	(void)level; (void)fmt;
}

int main(void)
{
	static struct tf_stats_table t;
	static int sessions[__DEVICES__];
	char id[32];
	t.interval_s = 60;
	t.max_devices = 100000;
	t.max_bytes = __MAX_BYTES__;
	stats_init(&t);
	t.window_end = 1772366460;
	for(int i = 0; i < __DEVICES__; i++){
		snprintf(id, sizeof(id), "dev-%08d", i);
		stats_connect(&t, id, &sessions[i], "192.168.0.1", false);
		stats_connect(&t, id, &sessions[i], "192.168.0.1", false); /* a reload: not counted */
		stats_publish_seen(&t, id, 100u + (unsigned long)i);
		if(i % 2) stats_denied(&t, id);
		if(i >= __CONNECTED__) stats_disconnect(&t, id, &sessions[i]);
	}
	stats_tick(&t); /* the window (in the past) has ended: flush */
	printf("tracked %ld\n", t.count);
	t.window_end = 1772366520;
	stats_tick(&t); /* nothing happened: one empty chunk; idle devices without a session go */
	printf("tracked %ld\n", t.count);
	stats_cleanup(&t);
	return 0;
}
"""


@pytest.fixture(scope="module")
def harness_output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (the broker's guard needs one too: scripts/bootstrap.sh)")
    work = tmp_path_factory.mktemp("stats-harness")
    source = (
        HARNESS.replace("__DEVICES__", str(DEVICES))
        .replace("__MAX_BYTES__", str(MAX_BYTES))
        .replace("__CONNECTED__", str(CONNECTED))
    )
    (work / "harness.c").write_text(source)
    binary = work / "harness"
    subprocess.run(
        [compiler, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror",
         f"-I{PLUGIN}", "-o", str(binary), str(work / "harness.c")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    result = subprocess.run([str(binary)], check=True, capture_output=True, text=True, timeout=30)
    return result.stdout.splitlines()


def _windows(lines: list[str]) -> list[list[bytes]]:
    """Chunks grouped by flush (a ``tracked`` line closes a flush)."""
    windows: list[list[bytes]] = [[]]
    for line in lines:
        if line.startswith("tracked "):
            windows.append([])
        else:
            topic, _, payload = line.partition(" ")
            assert topic == BROKER_STATS_TOPIC
            windows[-1].append(payload.encode())
    return windows[:-1]


def test_a_window_is_split_into_bounded_chunks_with_each_device_once(
    harness_output: list[str],
) -> None:
    first = _windows(harness_output)[0]
    assert len(first) > 1
    assert all(len(chunk) <= MAX_BYTES for chunk in first)
    decoded = [
        decode_broker_stats(chunk, max_bytes=MAX_BYTES, device_id_pattern=DEVICE_ID_PATTERN)
        for chunk in first
    ]
    assert [c.part for c in decoded] == list(range(len(decoded)))
    assert len({c.seq for c in decoded}) == len(decoded)
    seen = [device for c in decoded for device in c.devices]
    assert len(seen) == len(set(seen)) == DEVICES
    totals = {d: counters for c in decoded for d, counters in c.devices.items()}
    assert totals["dev-00000007"].connects == 1  # the second BASIC_AUTH of a session: a reload
    assert totals["dev-00000007"].bytes == 107
    assert totals["dev-00000007"].denied == 1
    assert totals["dev-00000002"].disconnects == 0  # still connected
    assert totals["dev-00000299"].addresses == frozenset({"192.168.0.1"})


def test_counters_reset_and_idle_devices_without_a_session_are_evicted(
    harness_output: list[str],
) -> None:
    tracked = [int(line.split()[1]) for line in harness_output if line.startswith("tracked ")]
    assert tracked == [DEVICES, CONNECTED]
    second = _windows(harness_output)[1]
    assert len(second) == 1
    assert json.loads(second[0])["devices"] == {}
