"""Every settings model -> TOML (tomli-w, commented) -> model is equal (issue 10 §2).

Both files: the server's ``trustfleet.toml`` and the device's ``device.toml``. Names with
quotes, backslashes and non-ASCII survive; a name with a newline is refused.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from settingskit import NAMES, device_settings, server_settings

from trustfleet.configfile import render_toml_model
from trustfleet.configfile.device import DeviceSettings, load_device_settings, save_device_settings
from trustfleet.settings import (
    CaSettings,
    PkiSettings,
    ServerSettings,
    load_server_settings,
    save_server_settings,
)

HOME = Path("/srv/home")
DEVICE = Path("/srv/device")
# Fields whose values a validator shapes (a pattern, https://): not generated freely.
SHAPED = {"service_identity", "est_url", "metadata_url", "targets_url", "origin",
          "username", "vhost", "ingest_queue", "attest_queue"}  # fmt: skip  # shaped or non-empty


def _server(**sections: Any) -> ServerSettings:
    return server_settings(HOME, **sections)


def _device(**sections: Any) -> DeviceSettings:
    return device_settings(DEVICE, **sections)


def _server_round_trip(model: ServerSettings) -> ServerSettings:
    text = render_toml_model(model, header=("header",), exclude={"home"})
    return ServerSettings.model_validate({**tomllib.loads(text), "home": HOME})


def _device_round_trip(model: DeviceSettings) -> DeviceSettings:
    text = render_toml_model(model, header=("header",), exclude={"directory"})
    return DeviceSettings.model_validate({**tomllib.loads(text), "directory": DEVICE})


def test_default_server_settings_round_trip() -> None:
    model = _server()
    assert _server_round_trip(model) == model


def test_a_list_of_tables_in_a_section_round_trips_and_keeps_the_keys_after_it() -> None:
    """Regression: [[witnesses]] written among [audit]'s keys took the keys after it."""
    witnesses = [
        {"url": "https://w1.example:9443", "key": "w1+01020304+BAAA", "ca": "public/w1.pem"},
        {"url": "http://w2.example", "key": "w2+05060708+BBBB"},
    ]
    model = _server(audit={"witnesses": witnesses, "witness_timeout_s": 7.5})
    text = render_toml_model(model, header=("header",), exclude={"home"})
    assert text.count("[[audit.witnesses]]") == 2 and "[[witnesses]]" not in text
    back = _server_round_trip(model)
    assert back == model and back.audit.witness_timeout_s == 7.5


def test_default_device_settings_round_trip() -> None:
    model = _device()
    assert _device_round_trip(model) == model
    assert _device_round_trip(_device(mqtt=None)) == _device(mqtt=None)  # no [mqtt] section


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_names_round_trip(name: str) -> None:
    server = _server(pki={"organization": name}, store={"url": f"sqlite:///{name}"})
    server = server.model_copy(update={"ca": {**server.ca, name: CaSettings(key=name, cert=name)}})
    assert _server_round_trip(server) == server
    device = _device(device={"id": "dev-0001", "model": name}, identity={"key": name})
    assert _device_round_trip(device) == device


@pytest.mark.parametrize(
    "name", ["two\nlines", "carriage\rreturn", "tab\there", "nul\x00", "del\x7f"]
)
def test_organization_with_a_newline_or_control_character_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="one line"):
        PkiSettings(organization=name)


def test_saved_files_load_back_equal(tmp_path: Path) -> None:
    home, device = tmp_path / "home", tmp_path / "device"
    home.mkdir(mode=0o755)
    device.mkdir(mode=0o755)
    server = _server(pki={"organization": NAMES["quote_backslash_unicode"]})
    server = server.model_copy(update={"home": home.resolve()})
    save_server_settings(server)
    assert load_server_settings(home) == server
    dev = _device(device={"id": "dev-0001", "model": NAMES["emoji"]})
    dev = dev.model_copy(update={"directory": device.resolve()})
    save_device_settings(dev)
    assert load_device_settings(device) == dev


def test_every_key_has_its_line_and_relative_paths_stay_relative() -> None:
    text = render_toml_model(_server(), header=(), exclude={"home"})
    assert 'tls_cert = "tls/api-chain.pem"' in text
    assert "home" not in tomllib.loads(text)
    assert "# Base URL written into certificates" in text  # a field's description


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_LINE = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40)


def _string_fields(model: type[BaseModel]) -> list[str]:
    return [
        name
        for name, info in model.model_fields.items()
        if info.annotation is str and name not in SHAPED
    ]


def _sections(model: type[BaseModel], skip: set[str]) -> dict[str, type[BaseModel]]:
    found = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and name not in skip:
            found[name] = annotation
    return found


def _strings(model: type[BaseModel], skip: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Every string field of every section set to generated text."""
    return st.fixed_dictionaries(
        {
            section: st.fixed_dictionaries(
                {
                    field: (_LINE if field == "organization" else _TEXT)
                    for field in _string_fields(cls)
                }
            )
            for section, cls in _sections(model, skip).items()
        }
    )


@settings(max_examples=60, deadline=None)
@given(sections=_strings(ServerSettings, skip=set()), ca_name=_TEXT.filter(bool))
def test_server_string_fields_round_trip(sections: dict[str, Any], ca_name: str) -> None:
    server = _server(**sections)
    server = server.model_copy(
        update={"ca": {**server.ca, ca_name: CaSettings(key=ca_name, cert="")}}
    )
    assert _server_round_trip(server) == server


@settings(max_examples=60, deadline=None)
@given(sections=_strings(DeviceSettings, skip=set()), mqtt_host=_TEXT)
def test_device_string_fields_round_trip(sections: dict[str, Any], mqtt_host: str) -> None:
    device = _device(**{**sections, "mqtt": {"port": 1883, "host": mqtt_host}})
    assert _device_round_trip(device) == device


def test_an_unbounded_float_round_trips() -> None:
    """TOML has inf; a JSON-mode dump would have turned it into null and dropped the key."""
    server = _server(api={"idle_timeout_s": float("inf")})
    assert _server_round_trip(server) == server
