"""A re-key interrupted at each step of its switch is finished by the next start (real SoftHSM2).

The states are those a power cut leaves between the steps of
:func:`trustfleet.agent._rekeytoken.finish_pending` (docs/lifecycle.md, "Fleet re-key"): the
new certificate is pending (``ldevid.next.pem``) and the token holds the keys under the labels
of that moment. :func:`trustfleet.agent.rekey.recover_rekey` (the agent's first step) must end
with one key pair labelled ``identity`` — the new one —, the new LDevID in place and the
key recorded; a pending certificate that fits no key leaves the old identity untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustfleet.agent.certfacts import read_pem_cert_facts
from trustfleet.agent.rekey import key_matches, pending_path, recover_rekey
from trustfleet.configfile.device import DeviceSettings
from trustfleet.errors import Config
from trustfleet.keystore import (
    TokenSession,
    destroy_key_pair,
    find_module,
    generate_pin,
    init_token,
    open_token,
    private_key_labels,
    rename_key_pair,
    write_pin_file,
    write_softhsm_conf,
)

pytestmark = pytest.mark.integration

TOKEN = "tf-device"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _device(tmp_path: Path) -> tuple[DeviceSettings, str]:
    directory = tmp_path / "dev-rekeycrash0001"
    conf = write_softhsm_conf(directory / "softhsm2.conf", token_dir=directory / "tokens")
    pin = generate_pin()
    (directory / "secrets").mkdir(mode=0o700)
    write_pin_file(directory / "secrets" / "token.pin", pin)
    init_token(module=find_module(), conf=conf, label=TOKEN, so_pin=generate_pin(), user_pin=pin)
    settings = DeviceSettings.model_validate({
        "directory": directory,
        "device": {"id": directory.name, "model": "sim-v1"},
        "identity": {"key": f"pkcs11:token={TOKEN};object=identity;type=private"
                            "?pin-source=file:secrets/token.pin"},
        "server": {"est_url": "https://localhost:1/.well-known/est"},
    })  # fmt: skip
    return settings, pin


def _session(settings: DeviceSettings, pin: str) -> TokenSession:
    return open_token(module=find_module(), label=TOKEN, pin=pin, conf=settings.directory /
                      "softhsm2.conf")  # fmt: skip


def _cert(key: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-rekeycrash0001")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _old_moved(s: TokenSession) -> None:
    rename_key_pair(s, "identity", "identity.old")


def _new_moved(s: TokenSession) -> None:
    _old_moved(s)
    rename_key_pair(s, "identity.next", "identity")


def _old_destroyed(s: TokenSession) -> None:
    _new_moved(s)
    destroy_key_pair(s, "identity.old")


STATES: dict[str, Callable[[TokenSession], None]] = {
    "the certificate arrived": lambda s: None,
    "the old key was moved aside": _old_moved,
    "the new key took the label": _new_moved,
    "the old key was destroyed": _old_destroyed,
}


@pytest.mark.parametrize("step", list(STATES), ids=list(STATES))
def test_a_switch_interrupted_after_this_step_is_finished(tmp_path: Path, step: str) -> None:
    settings, pin = _device(tmp_path)
    with _session(settings, pin) as s:
        old = s.generate_ec_key("identity")
        new = s.generate_ec_key("identity.next")
        old_pem = _cert(old, old.public_key())
        new_pem = _cert(new, new.public_key())
        new_spki = _spki(new.public_key())
        STATES[step](s)
    (settings.directory / "idevid.pem").write_bytes(old_pem)
    (settings.directory / "ldevid.pem").write_bytes(old_pem)
    pending_path(settings).write_bytes(new_pem)

    recover_rekey(settings)

    assert not pending_path(settings).exists()
    assert (settings.directory / "ldevid.pem").read_bytes() == new_pem
    with _session(settings, pin) as s:
        assert private_key_labels(s) == ["identity"]
        assert _spki(s.ec_private_key(label="identity").public_key()) == new_spki
    ldevid = read_pem_cert_facts(new_pem)
    idevid = read_pem_cert_facts(old_pem)
    assert key_matches(settings, ldevid=ldevid, idevid=idevid)
    assert not key_matches(settings, ldevid=idevid, idevid=idevid)
    recover_rekey(settings)  # nothing pending: nothing happens


def test_a_pending_certificate_for_no_key_leaves_the_old_identity(tmp_path: Path) -> None:
    settings, pin = _device(tmp_path)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with _session(settings, pin) as s:
        old = s.generate_ec_key("identity")
        old_pem = _cert(old, old.public_key())
    (settings.directory / "ldevid.pem").write_bytes(old_pem)
    pending_path(settings).write_bytes(_cert(stranger, stranger.public_key()))
    with pytest.raises(Config) as refused:
        recover_rekey(settings)
    assert refused.value.code == "agent.rekey.pending_mismatch"
    assert not pending_path(settings).exists()
    assert (settings.directory / "ldevid.pem").read_bytes() == old_pem
    with _session(settings, pin) as s:
        assert private_key_labels(s) == ["identity"]
    recover_rekey(settings)  # set aside: the next start runs as before


@pytest.mark.parametrize("pending", ["garbage", "stranger"], ids=["not-a-certificate", "no-key"])
def test_an_unusable_pending_file_after_the_old_key_moved_puts_it_back(
    tmp_path: Path, pending: str
) -> None:
    settings, pin = _device(tmp_path)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with _session(settings, pin) as s:
        old = s.generate_ec_key("identity")
        old_spki = _spki(old.public_key())
        rename_key_pair(s, "identity", "identity.old")
    content = (
        b"not a certificate" if pending == "garbage" else _cert(stranger, stranger.public_key())
    )
    pending_path(settings).write_bytes(content)
    with pytest.raises(Config):
        recover_rekey(settings)
    with _session(settings, pin) as s:
        assert private_key_labels(s) == ["identity"]
        assert _spki(s.ec_private_key(label="identity").public_key()) == old_spki
