"""CA generations in trustfleet.toml: ``[ca.device-2]`` loads, a name that is no CA's does not
(api.md: ``<kind>-<n>``; docs/lifecycle.md "CA rollover")."""

from __future__ import annotations

from pathlib import Path

import pytest
from settingskit import server_settings

from trustfleet.errors import Config
from trustfleet.settings import load_server_settings, update_server_settings
from trustfleet.settings import save_server_settings as save_server

_CA = {"key": "pkcs11:object=x", "cert": "public/x.pem"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir(mode=0o755)
    save_server(server_settings(folder.resolve()))
    return folder


@pytest.mark.parametrize("name", ["device-2", "manufacturing-12", "device-999999"])
def test_a_later_generation_loads(home: Path, name: str) -> None:
    update_server_settings(home, {"ca": {name: _CA}})
    assert name in load_server_settings(home).ca


BAD = {
    "unknown_kind": "tuf-2",
    "generation_zero": "device-0",
    "leading_zero": "device-02",
    "suffix": "device-2x",
    "path": "../device",
}


@pytest.mark.parametrize("name", list(BAD.values()), ids=list(BAD))
def test_a_name_that_is_no_ca_is_refused(home: Path, name: str) -> None:
    with pytest.raises(Config) as caught:
        update_server_settings(home, {"ca": {name: _CA}})
    assert caught.value.code == "config.ca.name"
