"""Creating a witness home: its token and Ed25519 key, its TLS certificate, its config.

Layout of a witness home::

    witness.toml               self-documenting configuration (settings.witness)
    tokens/softhsm2.conf       SoftHSM2 configuration (tokens in tokens/store/, 0700)
    secrets/ (0700)            the token PINs and the TLS key, each mode 0600
    public/                    witness.vkey (its cosignature key) and witness-tls.pem
    state/ (0700)              per log: the last checkpoint it cosigned (services.witness)
    alerts.jsonl               split views and failed proofs, one JSON record a line

The cosigning key is made inside the token and never leaves it; the TLS key is the one key on
disk (as the server's). Every file and folder gets an explicit mode whatever the umask.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustfleet.audit import COSIGNATURE_V1, verifier_key
from trustfleet.configfile import validate_model
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import (
    DIR_MODE,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    make_dirs,
    removed_on_failure,
    write_atomic,
    write_new,
)
from trustfleet.keystore import (
    PinSource,
    Pkcs11Uri,
    find_module,
    generate_pin,
    init_token,
    open_token,
    write_pin_file,
    write_softhsm_conf,
)
from trustfleet.services.witness import log_verifiers
from trustfleet.settings.witness import (
    WITNESS_CONFIG_FILE,
    WitnessHomeSettings,
    save_witness_settings,
)

__all__ = ["WITNESS_VKEY_FILE", "WitnessHome", "init_witness_home"]

WITNESS_VKEY_FILE = "public/witness.vkey"
_TLS_VALIDITY = timedelta(days=397)
_LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class WitnessHome:
    """A witness home just made.

    Attributes:
        settings: Its settings.
        vkey: Its cosignature verifier key (``name+keyid+base64(0x04 || key)``).
        tls_cert: Its self-signed TLS certificate (what a log trusts to call it).
    """

    settings: WitnessHomeSettings
    vkey: str
    tls_cert: Path


def init_witness_home(
    home: Path,
    *,
    name: str,
    logs: list[str],
    module: str | None = None,
    dns_names: tuple[str, ...] = (),
    now: datetime,
) -> WitnessHome:
    """Create a new witness home; on any failure nothing of it is left behind.

    Args:
        home: A new or empty folder.
        name: The witness's name (its cosignatures' key name).
        logs: The verifier keys (Ed25519 vkeys) of the logs it witnesses.
        module: The PKCS#11 module (default: find SoftHSM2).
        dns_names: Names for its TLS certificate besides localhost and the loopback addresses.
        now: The time (the TLS certificate's validity starts then).

    Raises:
        Conflict: ``home`` exists and is not empty.
        InvalidInput: A log key or the name is malformed; ``home`` is a link or a file.
    """
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        raise InvalidInput(f"{home} is not a folder", hint="give a new folder for the witness")
    if home.exists() and any(home.iterdir()):
        raise Conflict(f"{home} exists and is not empty", hint="choose a new directory")
    settings = _settings(home.resolve(), name=name, logs=logs, module=module or "")
    log_verifiers(settings.logs)  # each an Ed25519 note key
    created = not home.exists()
    make_dirs(home, mode=DIR_MODE)
    os.chmod(home, DIR_MODE)
    with removed_on_failure(home, created=created):
        return _build(settings, dns=dns_names, now=now)


def _build(settings: WitnessHomeSettings, *, dns: tuple[str, ...], now: datetime) -> WitnessHome:
    home = settings.home
    for sub, mode in (
        ("secrets", PRIVATE_DIR_MODE),
        ("tokens", PRIVATE_DIR_MODE),
        ("public", DIR_MODE),
        ("state", PRIVATE_DIR_MODE),
    ):
        (home / sub).mkdir(mode=mode)
        os.chmod(home / sub, mode)
    public_key = _make_key(settings)
    vkey = verifier_key(settings.name, COSIGNATURE_V1, public_key)
    write_atomic(home / WITNESS_VKEY_FILE, f"{vkey}\n".encode())
    _make_tls(settings, dns=dns, now=now)
    save_witness_settings(settings)
    return WitnessHome(settings=settings, vkey=vkey, tls_cert=settings.path(settings.tls_cert))


def _settings(home: Path, *, name: str, logs: list[str], module: str) -> WitnessHomeSettings:
    raw: dict[str, object] = {"home": home, "name": name, "logs": list(dict.fromkeys(logs))}
    if module:
        raw["keystore"] = {"module": module}
    path = home / WITNESS_CONFIG_FILE
    return validate_model(
        WitnessHomeSettings, raw, path=path, hint="see 'trustfleet witness init --help'"
    )


def _make_key(settings: WitnessHomeSettings) -> bytes:
    """Make the witness's token and its Ed25519 key; return the 32-byte public key."""
    uri = Pkcs11Uri.parse(settings.key)
    if uri.token is None or uri.object is None:
        raise InvalidInput("the witness key URI must name its token and object")
    module = find_module(settings.keystore.module or None)
    conf = write_softhsm_conf(
        settings.path(settings.keystore.softhsm_conf), token_dir=settings.path("tokens/store")
    )
    pin_file = Path(PinSource.parse(uri.pin_source or "", base_dir=settings.home).location)
    pin, so_pin = generate_pin(), generate_pin()
    write_pin_file(pin_file, pin)
    write_pin_file(pin_file.with_suffix(".so-pin"), so_pin)
    init_token(module=module, conf=conf, label=uri.token, so_pin=so_pin, user_pin=pin)
    with open_token(module=module, label=uri.token, pin=pin, conf=conf) as session:
        key = session.generate_ed25519_key(uri.object)
        public_key: bytes = key.public_bytes_raw()
    return public_key


def _make_tls(settings: WitnessHomeSettings, *, dns: tuple[str, ...], now: datetime) -> None:
    """A self-signed TLS 1.3 server certificate (P-256) for 'witness serve'."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"witness {settings.name}"[:64])])
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(("localhost", *dns))]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _LOOPBACK]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _TLS_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_new(settings.path(settings.tls_key), key_pem, mode=PRIVATE_FILE_MODE)
    write_atomic(settings.path(settings.tls_cert), cert.public_bytes(serialization.Encoding.PEM))
