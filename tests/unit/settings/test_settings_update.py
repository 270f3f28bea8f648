"""Both configuration files saved from their models and changed through them (issue 10 §2)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from settingskit import NAMES, device_settings, server_settings

from trustfleet.configfile.device import load_device_settings, update_device_settings
from trustfleet.configfile.device import save_device_settings as save_device
from trustfleet.errors import Config
from trustfleet.settings import CaSettings, load_server_settings, update_server_settings
from trustfleet.settings import save_server_settings as save_server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    save_server(server_settings(_folder(tmp_path / "home")))
    return tmp_path / "home"


@pytest.fixture
def device(tmp_path: Path) -> Path:
    save_device(device_settings(_folder(tmp_path / "device")))
    return tmp_path / "device"


def _folder(path: Path) -> Path:
    path.mkdir(mode=0o755)
    return path.resolve()


def test_save_writes_what_loads_back(home: Path) -> None:
    named = server_settings(home.resolve(), pki={"organization": NAMES["quote_backslash_unicode"]})
    path = save_server(named)
    assert path == home.resolve() / "trustfleet.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert raw["pki"]["organization"] == NAMES["quote_backslash_unicode"]
    assert load_server_settings(home) == named


def test_update_applies_checks_and_saves(home: Path) -> None:
    updated = update_server_settings(
        home, {"campaigns": {"tick_s": 0.2}, "ca": {"root": {"cert": "public/other.pem"}}}
    )
    assert updated.campaigns.tick_s == 0.2
    assert updated.ca["root"] == CaSettings(key="pkcs11:object=root", cert="public/other.pem")
    assert load_server_settings(home) == updated


def test_device_update_applies_and_saves(device: Path) -> None:
    updated = update_device_settings(
        device, {"mqtt": {"telemetry_interval_s": 1.0}, "device": {"model": NAMES["emoji"]}}
    )
    assert updated.mqtt is not None and updated.mqtt.telemetry_interval_s == 1.0
    assert updated.device.model == NAMES["emoji"]
    assert load_device_settings(device) == updated


def test_device_update_adds_a_missing_section(device: Path) -> None:
    save_device(device_settings(device.resolve(), mqtt=None))
    updated = update_device_settings(device, {"mqtt": {"port": 1883}})
    assert updated.mqtt is not None and updated.mqtt.port == 1883


REFUSED = {
    "unknown_section": ({"nope": {"x": 1}}, "unknown section [nope]"),
    "home_is_no_section": ({"home": {"x": 1}}, "unknown section [home]"),
    "unknown_key": ({"api": {"nope": 1}}, "unknown setting 'api.nope'"),
    "out_of_range": ({"api": {"port": 0}}, "setting 'api.port'"),
    "inconsistent": ({"ota": {"root_threshold": 9}}, "setting 'ota'"),
    "ca_not_a_table": ({"ca": {"root": "x"}}, "setting 'ca.root'"),
    "name_with_newline": ({"pki": {"organization": "a\nb"}}, "setting 'pki.organization'"),
}


@pytest.mark.parametrize(("changes", "expected"), REFUSED.values(), ids=REFUSED.keys())
def test_update_refuses_and_leaves_the_file(
    home: Path, changes: dict[str, Any], expected: str
) -> None:
    before = (home / "trustfleet.toml").read_bytes()
    with pytest.raises(Config) as caught:
        update_server_settings(home, changes)
    assert expected in caught.value.message
    assert caught.value.hint
    assert "\n" not in caught.value.one_line()
    assert (home / "trustfleet.toml").read_bytes() == before


def test_device_update_refuses_a_bad_url(device: Path) -> None:
    with pytest.raises(Config, match=r"setting 'server\.est_url'"):
        update_device_settings(device, {"server": {"est_url": "ftp://x"}})


def test_a_file_naming_its_own_folder_is_refused(home: Path) -> None:
    path = home / "trustfleet.toml"
    path.write_text('home = "/elsewhere"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(Config, match="setting 'home': not allowed in the file"):
        load_server_settings(home)
