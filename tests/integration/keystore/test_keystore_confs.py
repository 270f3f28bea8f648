"""Several SoftHSM2 configurations used one after the other in one process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keystore_support import SO_PIN, USER_PIN, MakeHome

from trustfleet.errors import Config, NotFound
from trustfleet.keystore import init_token, open_token
from trustfleet.keystore._runtime import CONF_ENV, active_conf

pytestmark = pytest.mark.integration


def test_server_and_devices_sequentially(module: Path, make_home: MakeHome) -> None:
    server_conf, device_a, device_b = make_home("server"), make_home("a"), make_home("b")
    environment_before = os.environ.get(CONF_ENV)
    init_token(module=module, conf=server_conf, label="server", so_pin=SO_PIN, user_pin=USER_PIN)
    with open_token(module=module, label="server", pin=USER_PIN, conf=server_conf) as server:
        ca = server.generate_ec_key("device-ca")
        ca_public = ca.public_key()
        with pytest.raises(Config, match="still open") as info:
            init_token(module=module, conf=device_a, label="dev", so_pin=SO_PIN, user_pin=USER_PIN)
        assert info.value.hint
        assert active_conf(module) == server_conf  # the refused switch changed nothing
        ca.sign(b"still usable", ec.ECDSA(hashes.SHA256()))
    device_keys = {}
    for conf in (device_a, device_b):
        init_token(module=module, conf=conf, label="dev", so_pin=SO_PIN, user_pin=USER_PIN)
        with open_token(module=module, label="dev", pin=USER_PIN, conf=conf) as device:
            device_keys[conf] = device.generate_ec_key("identity").public_key()
    assert device_keys[device_a] != device_keys[device_b]
    assert os.environ.get(CONF_ENV) == environment_before  # the environment is restored
    # Each token lives in its own configuration and is found again there only.
    for conf, public in device_keys.items():
        with open_token(module=module, label="dev", pin=USER_PIN, conf=conf) as device:
            assert device.ec_private_key(label="identity").public_key() == public
            with pytest.raises(NotFound):
                device.ec_private_key(label="device-ca")
    with open_token(module=module, label="server", pin=USER_PIN, conf=server_conf) as server:
        assert server.ec_private_key(label="device-ca").public_key() == ca_public
    with pytest.raises(NotFound):
        open_token(module=module, label="server", pin=USER_PIN, conf=device_a)


def test_factory_provisions_many_devices(module: Path, make_home: MakeHome) -> None:
    count = 50
    started = time.perf_counter()
    publics = set()
    for index in range(count):
        conf = make_home(f"device-{index:03d}")
        init_token(module=module, conf=conf, label="device", so_pin=SO_PIN, user_pin=USER_PIN)
        with open_token(module=module, label="device", pin=USER_PIN, conf=conf) as device:
            key = device.generate_ec_key("idevid")
            publics.add(
                key.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
            )
    elapsed = time.perf_counter() - started
    per_device_ms = elapsed / count * 1000
    print(f"\nprovisioned {count} device tokens in {elapsed:.2f} s ({per_device_ms:.0f} ms each)")
    assert len(publics) == count


def test_dropped_session_does_not_block_switching(module: Path, make_home: MakeHome) -> None:
    first, second = make_home("first"), make_home("second")
    init_token(module=module, conf=first, label="t", so_pin=SO_PIN, user_pin=USER_PIN)
    key = open_token(module=module, label="t", pin=USER_PIN, conf=first).generate_ec_key("k")
    with pytest.raises(Config, match="still open"):  # the key keeps its session alive
        init_token(module=module, conf=second, label="t", so_pin=SO_PIN, user_pin=USER_PIN)
    del key  # never closed, only dropped
    init_token(module=module, conf=second, label="t", so_pin=SO_PIN, user_pin=USER_PIN)
    assert active_conf(module) == second
