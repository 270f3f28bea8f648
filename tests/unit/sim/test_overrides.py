"""Typed settings overrides: names checked against the models, values validated, no text edits."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import InvalidInput
from trustfleet.settings import ServerSettings
from trustfleet.sim.overrides import merge_changes, parse_dotted, update_device_settings


def test_a_change_merges_into_its_section() -> None:
    current = {"attestation": {"enabled": True, "other": 1}, "api": {"port": 1}}
    merged = merge_changes(ServerSettings, current, {"attestation": {"enabled": False}})
    assert merged == {"attestation": {"enabled": False, "other": 1}, "api": {"port": 1}}
    assert current["attestation"]["enabled"] is True  # the input is left alone


def test_a_section_absent_from_the_data_is_added() -> None:
    assert merge_changes(ServerSettings, {}, {"ingest": {}}) == {"ingest": {}}


UNKNOWN: dict[str, tuple[type[Any], dict[str, dict[str, Any]], str]] = {
    "server-section": (ServerSettings, {"atestation": {"enabled": False}}, "atestation"),
    "server-key": (ServerSettings, {"attestation": {"enable": False}}, "enable"),
    "scalar-field-as-section": (ServerSettings, {"home": {"x": 1}}, "home"),
    "device-section": (DeviceSettings, {"mqt": {"port": 1}}, "mqt"),
    "device-key-in-optional-section": (DeviceSettings, {"mqtt": {"telemetry_s": 1}}, "telemetry_s"),
}


@pytest.mark.parametrize(("model", "changes", "name"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_unknown_names_are_refused(
    model: type[Any], changes: dict[str, dict[str, Any]], name: str
) -> None:
    with pytest.raises(InvalidInput, match=name) as info:
        merge_changes(model, {}, changes)
    assert info.value.code == "sim.settings.unknown"


DOTTED = {
    "bool": ({"attestation.enabled": "false"}, {"attestation": {"enabled": False}}),
    "number": ({"broker.revocation_poll_s": "0.25"}, {"broker": {"revocation_poll_s": 0.25}}),
    "string-with-quote": (
        {"pki.organization": '"O\\"Brien"'},
        {"pki": {"organization": 'O"Brien'}},
    ),
    "two-in-one-section": (
        {"api.workers": "2", "api.port": "9443"},
        {"api": {"workers": 2, "port": 9443}},
    ),
}


@pytest.mark.parametrize(("dotted", "changes"), DOTTED.values(), ids=DOTTED.keys())
def test_dotted_values_are_parsed_as_toml(dotted: dict[str, str], changes: Any) -> None:
    assert parse_dotted(dotted) == changes


@pytest.mark.parametrize("bad", [{"enabled": "false"}, {"attestation.enabled": "fals"}])
def test_bad_dotted_values_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        parse_dotted(bad)


DEVICE_TOML = """
[device]
id = "dev-0123456789ab"
model = "sim-v1"

[identity]
key = "pkcs11:token=device;object=identity;type=private?pin-source=file:secrets/token.pin"
softhsm_conf = "softhsm2.conf"
idevid = "idevid.pem"
ldevid = "ldevid.pem"

[server]
est_url = "https://localhost:8443/.well-known/est"
trust_bundle = "ca-bundle.pem"

[mqtt]
host = "localhost"
port = 8883
telemetry_interval_s = 10
"""


def _device(tmp_path: Path) -> Path:
    folder = tmp_path / "dev-0123456789ab"
    folder.mkdir()
    (folder / "device.toml").write_text(DEVICE_TOML, encoding="utf-8")
    return folder


def test_a_device_change_is_validated_and_written_whole(tmp_path: Path) -> None:
    folder = _device(tmp_path)
    settings = update_device_settings(folder, {"mqtt": {"telemetry_interval_s": 1.0}})
    assert settings.mqtt is not None and settings.mqtt.telemetry_interval_s == 1.0
    doc = tomllib.loads((folder / "device.toml").read_text(encoding="utf-8"))
    assert doc["mqtt"] == {"host": "localhost", "port": 8883, "telemetry_interval_s": 1.0}
    assert doc["device"]["id"] == "dev-0123456789ab"


def test_a_refused_device_value_leaves_the_file_alone(tmp_path: Path) -> None:
    folder = _device(tmp_path)
    with pytest.raises(InvalidInput, match="telemetry_interval_s") as info:
        update_device_settings(folder, {"mqtt": {"telemetry_interval_s": 0.0}})
    assert info.value.code == "sim.settings.invalid"
    assert (folder / "device.toml").read_text(encoding="utf-8") == DEVICE_TOML
