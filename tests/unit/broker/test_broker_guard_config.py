"""The broker's configuration for the guard plugin (issue 9 §2): pure rendering and its bounds.

The behaviour itself is proven against a real Mosquitto in
tests/integration/broker/test_broker_guard.py; these cases pin what is rendered and refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from trustfleet.broker import BrokerConfig, render_acl, render_mosquitto_conf
from trustfleet.errors import Config

VIEW = Path("/proc/self/fd/7")


def _config(**changes: object) -> BrokerConfig:
    base = BrokerConfig.for_home(
        Path("/srv/tf-home"), port=8883, service_identities=["svc.ingest"], run_as="mosquitto"
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _conf(config: BrokerConfig) -> list[str]:
    text = render_mosquitto_conf(
        config, view=VIEW, guard=Path("tf_guard-0.so"), dynsec=Path("/usr/lib/dynsec.so")
    )
    return text.splitlines()


def test_guard_is_the_first_plugin_with_its_limits() -> None:
    lines = _conf(_config(device_rate_per_s=2.5, device_burst=7, device_max_payload_bytes=4096))
    plugins = [line for line in lines if line.startswith("plugin ")]
    assert plugins == [f"plugin {VIEW}/tf_guard-0.so", "plugin /usr/lib/dynsec.so"]
    assert "plugin_opt_services svc.ingest" in lines
    assert "plugin_opt_device_max_payload 4096" in lines
    assert "plugin_opt_device_rate_per_s 2.5" in lines
    assert "plugin_opt_device_burst 7" in lines
    assert f"max_packet_size {4096 + 8192}" in lines


@pytest.mark.parametrize(
    "line",
    ["retain_available false", "max_inflight_messages 20", "user mosquitto"],
    ids=["retained_off", "device_inflight_bound", "unprivileged_user"],
)
def test_broker_wide_bounds_rendered(line: str) -> None:
    assert line in _conf(_config())


def test_identity_comes_from_the_guard_not_the_listener() -> None:
    lines = _conf(_config())
    assert "use_identity_as_username true" not in lines
    assert "require_certificate true" in lines
    # Every file Mosquitto opens after dropping privileges is reached through the fd view.
    paths = [line.split()[-1] for line in lines if line.split()[:1] in (
        ["acl_file"], ["certfile"], ["keyfile"], ["cafile"], ["crlfile"],
        ["plugin_opt_config_file"],
    )]  # fmt: skip
    assert len(paths) == 6 and all(p.startswith(f"{VIEW}/") for p in paths), paths
    assert f"listener 0 {VIEW}/run/admin.sock" in lines


def test_acl_file_keeps_service_and_device_grants() -> None:
    acl = render_acl(_config())
    assert "user svc.ingest\ntopic read tf/v1/d/+/#" in acl
    assert "pattern readwrite tf/v1/d/%u/#" in acl


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"run_as": "root"}, "broker.user.root"),
        ({"service_identities": ("svc",)}, "broker.service_identity"),
        ({"service_identities": ("svc-ingest-01",)}, "broker.service_identity"),
        ({"service_identities": ("svc ingest",)}, "broker.service_identity"),
        ({"device_rate_per_s": 0.0}, "broker.limit"),
        ({"device_rate_per_s": float("nan")}, "broker.limit"),
        ({"device_burst": 0}, "broker.limit"),
        ({"device_max_inflight": 0}, "broker.limit"),
        ({"device_max_payload_bytes": 10}, "broker.limit"),
        ({"max_packet_bytes": 16 * 1024}, "broker.limit"),
        ({"stats_interval_s": -1}, "broker.limit"),
        ({"stats_interval_s": 1.5}, "broker.limit"),
        ({"stats_max_devices": 0}, "broker.limit"),
        ({"stats_max_bytes": 1024}, "broker.limit"),
    ],
    ids=[
        "broker_as_root",
        "service_identity_in_device_alphabet",
        "service_identity_like_device_id",
        "service_identity_with_space",
        "zero_rate",
        "nan_rate",
        "zero_burst",
        "zero_inflight",
        "tiny_payload",
        "packet_smaller_than_payload",
        "negative_stats_interval",
        "fractional_stats_interval",
        "no_stats_devices",
        "stats_chunk_too_small",
    ],
)
def test_unsafe_values_refused(changes: dict[str, object], code: str) -> None:
    with pytest.raises(Config) as caught:
        _config(**changes)
    assert caught.value.code == code


def test_guard_statistics_options_and_who_may_read_them() -> None:
    """Issue 13: the guard publishes per-device counters every service window on a topic
    only services read (devices are refused by the guard itself)."""
    lines = _conf(_config(stats_interval_s=30, stats_max_devices=500, stats_max_bytes=4096))
    assert "plugin_opt_stats_interval_s 30" in lines
    assert "plugin_opt_stats_max_devices 500" in lines
    assert "plugin_opt_stats_max_bytes 4096" in lines
    assert "plugin_opt_stats_interval_s 0" in _conf(_config(stats_interval_s=0))  # off
    acl = render_acl(_config())
    service = acl.split("user svc.ingest\n", 1)[1].split("\n\n", 1)[0]
    assert "topic read tf/v1/s/broker/stats" in service.splitlines()
    assert acl.count("tf/v1/s/broker/stats") == 1  # nobody else
