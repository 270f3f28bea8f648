"""DtlsServerConfig from a server home's settings, and refusals of a bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import Config
from trustfleet.lwm2m._dtls_peer import is_client_hello
from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.settings.lwm2m import Lwm2mSettings
from trustfleet.settings.server import ServerSettings


def test_from_settings_reads_lwm2m_and_the_broker_trust_files() -> None:
    home = Path("/srv/home")
    section = Lwm2mSettings(port=0, modes=["cert"], max_peers=7, idle_timeout_s=9.0)
    config = DtlsServerConfig.from_settings(ServerSettings(home=home, ca={}, lwm2m=section))
    assert config.port == 0 and config.modes == ("cert",)
    assert config.ciphers[0] == "ECDHE-ECDSA-AES128-CCM8"
    assert config.cert_chain == home / "tls/broker-chain.pem"
    assert config.key_file == home / "secrets/broker-tls.key"
    assert config.ca_file == home / "broker/device-trust.pem"
    assert config.ca_path == home / "broker/trust.d"
    assert config.crl_file == home / "broker/device-ca.crl.pem"
    assert (config.max_peers, config.idle_timeout_s) == (7, 9.0)


@pytest.mark.parametrize(
    ("modes", "ciphers", "cert"),
    [
        (("psk",), ("NO-SUCH-SUITE",), None),
        (("cert",), ("ECDHE-ECDSA-AES128-CCM8",), None),
        (("cert",), ("ECDHE-ECDSA-AES128-CCM8",), Path("/nonexistent/chain.pem")),
    ],
    ids=["unknown_cipher", "cert_mode_without_cert", "missing_cert_file"],
)
def test_bad_configuration_is_a_config_error(
    modes: tuple[str, ...], ciphers: tuple[str, ...], cert: Path | None
) -> None:
    config = DtlsServerConfig(
        host="127.0.0.1", port=0, modes=modes, ciphers=ciphers, cert_chain=cert, key_file=cert
    )
    with pytest.raises(Config) as caught:
        DtlsServer(config, psk_lookup=lambda _identity: None, on_record=lambda _p, _d: None)
    assert caught.value.code == "lwm2m.dtls.config"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x16\xfe\xff\x00\x00" + b"\x00" * 8 + b"\x01" + b"\x00" * 20, True),
        (b"\x16\xfe\xfd\x00\x01" + b"\x00" * 8 + b"\x01" + b"\x00" * 20, False),
        (b"\x17\xfe\xfd\x00\x00" + b"\x00" * 8 + b"\x01" + b"\x00" * 20, False),
        (b"\x16\xfe\xfd\x00\x00" + b"\x00" * 8, False),
    ],
    ids=["client_hello", "epoch_1", "application_data", "truncated"],
)
def test_is_client_hello(data: bytes, expected: bool) -> None:
    assert is_client_hello(data) is expected
