"""Fixtures for keystore tests against a real SoftHSM2, each in its own temporary token dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from keystore_support import SO_PIN, USER_PIN, MakeHome

from trustfleet.errors import Config
from trustfleet.keystore import (
    TokenSession,
    find_module,
    init_token,
    open_token,
    write_softhsm_conf,
)


@pytest.fixture(scope="session")
def module() -> Path:
    """The SoftHSM2 module, or skip: these tests need the real one."""
    try:
        return find_module()
    except Config:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


@pytest.fixture
def make_home(tmp_path: Path) -> MakeHome:
    """Create a SoftHSM2 home (conf + token dir) under the test's tmp dir."""

    def make(name: str) -> Path:
        home = tmp_path / name
        return write_softhsm_conf(home / "softhsm2.conf", token_dir=home / "tokens")

    return make


@pytest.fixture
def conf(make_home: MakeHome) -> Path:
    """One fresh SoftHSM2 configuration."""
    return make_home("server")


@pytest.fixture
def token(module: Path, conf: Path) -> Iterator[TokenSession]:
    """A freshly initialised token 'server', opened and logged in; closed afterwards."""
    init_token(module=module, conf=conf, label="server", so_pin=SO_PIN, user_pin=USER_PIN)
    session = open_token(module=module, label="server", pin=USER_PIN, conf=conf)
    yield session
    session.close()
