"""A release (TUF targets) key in a real SoftHSM2 token, as ``release build`` signs with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trustfleet.errors import Config
from trustfleet.keystore import find_module, init_token, open_token, write_softhsm_conf
from trustfleet.ota.signer import Pkcs11Signer

_SO_PIN = "so-PIN-for-attest-tests"
_USER_PIN = "user-PIN-for-attest-tests"


@pytest.fixture(scope="module")
def release_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Signer]:
    """A P-256 key generated inside a fresh SoftHSM2 token, wrapped as a TUF signer."""
    try:
        module = find_module()
    except Config:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    home: Path = tmp_path_factory.mktemp("release-token")
    conf = write_softhsm_conf(home / "softhsm2.conf", token_dir=home / "tokens")
    init_token(module=module, conf=conf, label="release", so_pin=_SO_PIN, user_pin=_USER_PIN)
    session = open_token(module=module, label="release", pin=_USER_PIN, conf=conf)
    try:
        yield Pkcs11Signer(session.generate_ec_key("tf-release", curve="P-256"))
    finally:
        session.close()
