"""trustfleet.toml saved from the model and changed through it (issue 10 §2)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from trustfleet.errors import Config
from trustfleet.settings import (
    CA_NAMES,
    CaSettings,
    PkiSettings,
    ServerSettings,
    load_server_settings,
    save_server_settings,
    update_server_settings,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    cas = {
        name: CaSettings(key=f"pkcs11:object={name}", cert=f"public/{name}.pem")
        for name in CA_NAMES
    }
    save_server_settings(ServerSettings(home=home.resolve(), ca=cas))
    return home


def test_save_writes_what_loads_back(home: Path) -> None:
    settings = load_server_settings(home)
    named = settings.model_copy(update={"pki": PkiSettings(organization='O"Brien \\ Ünïcode')})
    path = save_server_settings(named)
    assert path == home.resolve() / "trustfleet.toml"
    assert tomllib.loads(path.read_text(encoding="utf-8"))["pki"]["organization"] == (
        'O"Brien \\ Ünïcode'
    )
    assert load_server_settings(home) == named


def test_update_applies_checks_and_saves(home: Path) -> None:
    updated = update_server_settings(
        home, {"campaigns": {"tick_s": 0.2}, "ca": {"root": {"cert": "public/other.pem"}}}
    )
    assert updated.campaigns.tick_s == 0.2
    assert updated.ca["root"] == CaSettings(key="pkcs11:object=root", cert="public/other.pem")
    assert load_server_settings(home) == updated


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"nope": {"x": 1}}, "unknown section [nope]"),
        ({"home": {"x": 1}}, "unknown section [home]"),
        ({"api": {"nope": 1}}, "unknown setting 'api.nope'"),
        ({"api": {"port": 0}}, "setting 'api.port'"),
        ({"ota": {"root_threshold": 9}}, "setting 'ota'"),
        ({"ca": {"root": "x"}}, "setting 'ca.root'"),
    ],
)
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
