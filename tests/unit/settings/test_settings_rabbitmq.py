"""``[broker] kind`` and ``[rabbitmq]``: URLs by kind, and the service's password file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from settingskit import server_settings

from trustfleet.errors import Config
from trustfleet.services.amqp_client import MAX_PASSWORD_BYTES, AmqpEndpoint


def test_defaults_are_mosquitto_and_an_empty_cluster(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    assert settings.broker.kind == "mosquitto"
    assert settings.rabbitmq.management_urls == [] and settings.rabbitmq.vhost == "/"


BAD = {
    "amqp_as_management": {"management_urls": ["amqp://rabbit1:5672"]},
    "http_as_amqp": {"amqp_urls": ["http://rabbit1:15672"]},
    "amqp_with_a_path": {"amqp_urls": ["amqp://rabbit1:5672/vhost"]},
    "no_host": {"management_urls": ["https://"]},
    "spaces": {"management_urls": ["https://rabbit 1:15672"]},
    "unknown_kind": None,
}


@pytest.mark.parametrize("rabbit", BAD.values(), ids=BAD.keys())
def test_bad_values_are_refused(tmp_path: Path, rabbit: dict[str, list[str]] | None) -> None:
    with pytest.raises(ValidationError):
        if rabbit is None:
            server_settings(tmp_path, broker={"kind": "emqx"})
        else:
            server_settings(tmp_path, rabbitmq=rabbit)


def _endpoint(home: Path, password: bytes | None) -> AmqpEndpoint:
    if password is not None:
        (home / "secrets").mkdir(exist_ok=True)
        (home / "secrets" / "rabbitmq.password").write_bytes(password)
    settings = server_settings(
        home, broker={"kind": "rabbitmq"}, rabbitmq={"amqp_urls": ["amqp://127.0.0.1:5672"]}
    )
    return AmqpEndpoint.from_settings(settings)


def test_the_password_comes_from_its_file(tmp_path: Path) -> None:
    endpoint = _endpoint(tmp_path, b"s3cret\n")
    assert endpoint.password == "s3cret" and endpoint.username == "trustfleet"
    assert endpoint.urls == ("amqp://127.0.0.1:5672",)


BAD_PASSWORDS = {
    "missing": None,
    "empty": b"\n",
    "not_utf8": b"\xff\xfe",
    "too_large": b"x" * (MAX_PASSWORD_BYTES + 1),
}


@pytest.mark.parametrize("password", BAD_PASSWORDS.values(), ids=BAD_PASSWORDS.keys())
def test_a_bad_password_file_is_one_config_error(tmp_path: Path, password: bytes | None) -> None:
    with pytest.raises(Config) as caught:
        _endpoint(tmp_path, password)
    assert caught.value.code == "broker.amqp.password"
    assert "rabbitmq.password" in caught.value.one_line()


def test_no_amqp_url_is_a_config_error(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, broker={"kind": "rabbitmq"})
    with pytest.raises(Config, match="amqp_urls"):
        AmqpEndpoint.from_settings(settings)
