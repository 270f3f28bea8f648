"""``[mqtt] protocol``: "5" by default, "3.1.1" on request, anything else refused by name."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from trustfleet.configfile.device import (
    DeviceSettings,
    MqttSection,
    load_device_settings,
    save_device_settings,
    update_device_settings,
)
from trustfleet.errors import Config


def _device(directory: Path) -> DeviceSettings:
    return DeviceSettings.model_validate(
        {
            "directory": directory,
            "device": {"id": "dev-0001", "model": "m1"},
            "identity": {"key": "pkcs11:token=tf-device;object=identity"},
            "server": {"est_url": "https://localhost:8443/.well-known/est"},
            "mqtt": {"port": 8883},
        }
    )


@pytest.fixture
def device(tmp_path: Path) -> Path:
    folder = tmp_path / "device"
    folder.mkdir(mode=0o755)
    save_device_settings(_device(folder.resolve()))
    return folder


def test_default_is_mqtt5_and_is_written_with_its_comment(device: Path) -> None:
    loaded = load_device_settings(device)
    assert loaded.mqtt is not None and loaded.mqtt.protocol == "5"
    text = (device / "device.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text)["mqtt"]["protocol"] == "5"
    assert "# MQTT version the agent speaks" in text


def test_mqtt311_is_accepted_and_saved(device: Path) -> None:
    updated = update_device_settings(device, {"mqtt": {"protocol": "3.1.1"}})
    assert updated.mqtt is not None and updated.mqtt.protocol == "3.1.1"
    reloaded = load_device_settings(device).mqtt
    assert reloaded is not None and reloaded.protocol == "3.1.1"


REFUSED: dict[str, Any] = {
    "mqtt31": "3.1",
    "bare_3": "3",
    "v5_spelled": "v5",
    "mqttv311": "mqttv311",
    "integer_5": 5,
    "float_3_1_1": 3.11,
    "empty": "",
}


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_other_versions_are_refused_by_name(device: Path, value: Any) -> None:
    before = (device / "device.toml").read_bytes()
    with pytest.raises(Config) as caught:
        update_device_settings(device, {"mqtt": {"protocol": value}})
    line = caught.value.one_line()
    assert "mqtt.protocol" in line and "'5'" in line and "'3.1.1'" in line, line
    assert "\n" not in line
    assert (device / "device.toml").read_bytes() == before


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_the_model_refuses_them_too(value: Any) -> None:
    with pytest.raises(ValueError, match="protocol"):
        MqttSection.model_validate({"port": 8883, "protocol": value})


def test_fallback_addresses_follow_the_first(device: Path) -> None:
    updated = update_device_settings(
        device, {"mqtt": {"host": "node1", "fallback": ["node2:8884", "[::1]:8885"]}}
    )
    assert updated.mqtt is not None
    assert updated.mqtt.addresses() == [("node1", 8883), ("node2", 8884), ("::1", 8885)]


BAD_FALLBACK = {
    "no_port": "node2",
    "empty_host": ":8883",
    "port_not_a_number": "node2:http",
    "port_zero": "node2:0",
    "port_too_large": "node2:65536",
}


@pytest.mark.parametrize("entry", BAD_FALLBACK.values(), ids=BAD_FALLBACK.keys())
def test_a_bad_fallback_is_refused_and_the_file_kept(device: Path, entry: str) -> None:
    before = (device / "device.toml").read_bytes()
    with pytest.raises(Config, match="host:port"):
        update_device_settings(device, {"mqtt": {"fallback": [entry]}})
    assert (device / "device.toml").read_bytes() == before
