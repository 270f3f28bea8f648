"""Typed settings overrides: the tests' dotted form parsed as TOML; names checked by the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trustfleet.configfile import merge_changes
from trustfleet.configfile.device import DeviceSettings
from trustfleet.errors import Config, InvalidInput
from trustfleet.settings import ServerSettings
from trustfleet.sim.overrides import parse_dotted

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


BAD_DOTTED = {
    "no-section": ({"enabled": "false"}, "sim.settings.name"),
    "empty-key": ({"attestation.": "false"}, "sim.settings.name"),
    "not-toml": ({"attestation.enabled": "fals"}, "sim.settings.value"),
}


@pytest.mark.parametrize(("bad", "code"), BAD_DOTTED.values(), ids=BAD_DOTTED.keys())
def test_bad_dotted_values_are_refused(bad: dict[str, str], code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_dotted(bad)
    assert info.value.code == code


UNKNOWN: dict[str, tuple[type[Any], dict[str, dict[str, Any]], str]] = {
    "server-section": (ServerSettings, {"atestation": {"enabled": False}}, "atestation"),
    "server-key": (ServerSettings, {"attestation": {"enable": False}}, "enable"),
    "scalar-field-as-section": (ServerSettings, {"home": {"x": 1}}, "home"),
    "device-section": (DeviceSettings, {"mqt": {"port": 1}}, "mqt"),
    "device-key-in-optional-section": (DeviceSettings, {"mqtt": {"telemetry_s": 1}}, "telemetry_s"),
}


@pytest.mark.parametrize(("model", "changes", "name"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_what_the_harness_overrides_is_checked_by_name(
    model: type[Any], changes: dict[str, dict[str, Any]], name: str
) -> None:
    with pytest.raises(Config, match=name):
        merge_changes(model, {}, changes, path=Path("x.toml"))
