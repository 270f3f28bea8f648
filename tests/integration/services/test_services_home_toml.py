"""Regression (issue 10 §2): a server home named with quotes, backslashes or non-ASCII gets a
trustfleet.toml that tomllib reads (it was written with f-strings), and so do its devices."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from trustfleet.agent.settings import load_device_settings
from trustfleet.errors import InvalidInput
from trustfleet.services.factory import provision_devices
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings, update_server_settings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NAME = 'O"Brien \\ Ünïcode'


def test_home_named_with_a_quote_writes_toml_that_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    options = HomeOptions(organization=NAME, pins_out=tmp_path / "pins")
    init_server_home(home, options=options, now=NOW)
    raw = tomllib.loads((home / "trustfleet.toml").read_text(encoding="utf-8"))
    assert raw["pki"]["organization"] == NAME
    assert raw["ota"]["repo_dir"] == "ota/repo"  # paths stay relative to the home
    settings = load_server_settings(home)
    root = x509.load_pem_x509_certificate(settings.path(settings.ca["root"].cert).read_bytes())
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == NAME
    rt = Runtime.open(settings)
    try:
        (made,) = provision_devices(rt, out_dir=tmp_path / "devices", count=1, model="m1", now=NOW)
    finally:
        rt.close()
    device = load_device_settings(made.directory)
    assert (device.device.id, device.device.model) == (made.device_id, "m1")
    assert device.mqtt is not None and device.mqtt.port == settings.broker.port
    assert device.server.est_url == "https://localhost:8443/.well-known/est"
    updated = update_server_settings(home, {"campaigns": {"tick_s": 0.2}})
    assert load_server_settings(home) == updated and updated.pki.organization == NAME


def test_home_named_with_a_newline_is_refused_and_not_created(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(InvalidInput) as caught:
        options = HomeOptions(organization="two\nlines", pins_out=tmp_path / "pins")
        init_server_home(home, options=options, now=NOW)
    assert caught.value.message.startswith("--name: ")
    assert "one line" in caught.value.message
    assert not home.exists()
    assert not (tmp_path / "home-offline").exists() and not (tmp_path / "pins").exists()
