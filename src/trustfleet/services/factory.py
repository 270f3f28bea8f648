"""Factory provisioning: device identity keys in device tokens, IDevIDs, registration.

A virtual device is a directory ``DEVDIR/<device-id>/``::

    softhsm2.conf          the device's own SoftHSM2 configuration (tokens in tokens/)
    secrets/token.pin      the device token's user PIN (0600)
    idevid.pem             the factory identity certificate (IEEE 802.1AR IDevID)
    ca-bundle.pem          the trust bundle of the fleet service
    device.toml            what the agent reads
    fuses.json, boot-key.pem, tuf/metadata/root.json, slots/a/, bootenv.json
                           the boot chain and update trust (docs/ota.md), when the home has
                           an OTA repository; slot a holds the model's newest release
    tpm/                   with a release in slot a: the device's swtpm, manufactured by the
                           home's simulated TPM vendor (HOME/tpm-vendor), with its AK

Provisioning runs in two phases because one process can have only one SoftHSM2
configuration active at a time: first every device key is generated in its own token, then
the manufacturing CA (in the service's token) signs all IDevIDs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustfleet.audit.context import current_operator
from trustfleet.configfile import validate_model
from trustfleet.configfile.device import DEVICE_FILE, DeviceSettings, save_device_settings
from trustfleet.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from trustfleet.fileio import (
    DIR_MODE,
    FILE_MODE,
    PRIVATE_DIR_MODE,
    copy_atomic,
    make_dirs,
    write_atomic,
)
from trustfleet.keystore import (
    generate_pin,
    init_token,
    open_token,
    write_pin_file,
    write_softhsm_conf,
)
from trustfleet.ota.versions import check_model
from trustfleet.pki import (
    IDEVID,
    CsrPolicy,
    check_csr,
    issue_device_certificate,
    new_device_id,
    validate_device_id,
)
from trustfleet.services._certs import issuer_name, record_certificate
from trustfleet.services._factory_tpm import manufacture_device_tpm
from trustfleet.services._ota_keys import BOOT_KEY_PEM
from trustfleet.services.ota import DeviceOtaBundle, device_provisioning
from trustfleet.services.runtime import Runtime

__all__ = ["ProvisionedDevice", "prepare_out_dir", "provision_devices", "sign_csr"]

DEVICE_TOKEN = "tf-device"  # noqa: S105  # a token label, not a password
IDENTITY_KEY = "identity"
_MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProvisionedDevice:
    """One device made by the factory."""

    device_id: str
    model: str
    directory: Path | None
    certificate: x509.Certificate
    allowed_builders: tuple[str, ...] = ()
    """The builders whose releases it installs (``[ota] allowed_builders``; empty: any)."""


def provision_devices(
    rt: Runtime,
    *,
    out_dir: Path,
    count: int,
    model: str,
    now: datetime,
    on_progress: Callable[[str], None] | None = None,
    tpm: bool = True,
) -> list[ProvisionedDevice]:
    """Create ``count`` virtual devices under ``out_dir`` and register them as manufactured.

    A device whose creation fails leaves no directory and no store row behind. With ``tpm``
    (the default) a device that gets a release also gets a swtpm with its AK (about 2 s per
    device); large simulated fleets that do not attest may pass ``tpm=False``.
    """
    if not 1 <= count <= 10_000:
        raise InvalidInput("--count must be between 1 and 10000")
    check_model(model)
    ota = _ota_bundle(rt, model=model)
    prepare_out_dir(out_dir)
    keys: list[tuple[str, Path, CertificatePublicKeyTypes]] = []
    made: list[ProvisionedDevice] = []
    rt.release_keys()  # device tokens live under other SoftHSM2 configurations
    try:
        for _ in range(count):
            device_id = new_device_id()
            directory = out_dir / device_id
            keys.append((device_id, directory, _make_device_token(rt, directory)))
            if on_progress:
                on_progress("key")
        for device_id, directory, public_key in keys:
            made.append(
                _certify(
                    rt,
                    device_id=device_id,
                    directory=directory,
                    public_key=public_key,
                    model=model,
                    now=now,
                    ota=ota,
                    tpm=tpm,
                )
            )
            if on_progress:
                on_progress("device")
    except BaseException:
        # Devices registered so far are complete and stay; every other folder goes.
        registered = {d.device_id for d in made}
        for device_id, directory, _key in keys:
            if device_id not in registered:
                shutil.rmtree(directory, ignore_errors=True)
        raise
    return made


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``--out`` (0755) or accept an existing real folder; never a symbolic link.

    Raises:
        InvalidInput: It is a link, a file, or cannot be created (code ``factory.out.invalid``).
    """
    problem = None
    if out_dir.is_symlink():
        problem = "is a symbolic link"
    elif out_dir.exists() and not out_dir.is_dir():
        problem = "exists and is not a folder"
    else:
        try:
            make_dirs(out_dir, mode=DIR_MODE)
        except OSError as exc:
            problem = f"cannot be created ({exc.strerror or exc})"
    if problem is not None:
        raise InvalidInput(
            f"--out {out_dir} {problem}",
            hint="give a new or existing folder for the device folders",
            code="factory.out.invalid",
        )


def _make_device_token(rt: Runtime, directory: Path) -> CertificatePublicKeyTypes:
    os.mkdir(directory, PRIVATE_DIR_MODE)  # never an existing folder or link: ids are new
    os.chmod(directory, PRIVATE_DIR_MODE)
    try:
        os.mkdir(directory / "secrets", PRIVATE_DIR_MODE)
        os.chmod(directory / "secrets", PRIVATE_DIR_MODE)
        conf = write_softhsm_conf(directory / "softhsm2.conf", token_dir=directory / "tokens")
        pin = generate_pin()
        write_pin_file(directory / "secrets" / "token.pin", pin)
        so_pin = generate_pin()
        write_pin_file(directory / "secrets" / "token.so-pin", so_pin)
        init_token(module=rt.module, conf=conf, label=DEVICE_TOKEN, so_pin=so_pin, user_pin=pin)
        with open_token(module=rt.module, label=DEVICE_TOKEN, pin=pin, conf=conf) as session:
            return session.generate_ec_key(IDENTITY_KEY, curve="P-256").public_key()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _certify(
    rt: Runtime,
    *,
    device_id: str,
    directory: Path,
    public_key: CertificatePublicKeyTypes,
    model: str,
    now: datetime,
    ota: DeviceOtaBundle | None = None,
    tpm: bool = True,
) -> ProvisionedDevice:
    cert = _issue_idevid(rt, device_id=device_id, public_key=public_key, model=model, now=now)
    if ota is not None:
        _write_boot_chain(rt, directory, ota=ota, model=model)
        if tpm and ota.release is not None:  # a bootable device gets its TPM (attestation.md)
            manufacture_device_tpm(rt, directory)
    bundle = rt.settings.path("public/ca-bundle.pem").read_bytes()
    write_atomic(directory / "ca-bundle.pem", bundle)
    settings = _device_settings(rt, directory=directory, device_id=device_id, model=model)
    save_device_settings(settings)
    write_atomic(directory / "idevid.pem", cert.public_bytes(serialization.Encoding.PEM))
    _register(rt, cert, device_id=device_id, model=model, source="factory.provision", now=now)
    return ProvisionedDevice(
        device_id=device_id,
        model=model,
        directory=directory,
        certificate=cert,
        allowed_builders=tuple(settings.ota.allowed_builders),
    )


def _ota_bundle(rt: Runtime, *, model: str) -> DeviceOtaBundle | None:
    """What the device gets for updates; None for a home without an OTA repository."""
    try:
        return device_provisioning(rt, model=model)
    except NotFound:
        return None


def _write_boot_chain(rt: Runtime, directory: Path, *, ota: DeviceOtaBundle, model: str) -> None:
    """Fuses, boot key, trusted TUF root and (if one is published) the release in slot a.

    The formats are the device's (docs/ota.md, "Device side"); services may not import the
    agent, so they are written here directly.
    """
    fuses = {"model": model, "boot_key_sha256": ota.boot_key_sha256}
    write_atomic(directory / "fuses.json", _json_line(fuses))
    copy_atomic(rt.settings.path(BOOT_KEY_PEM), directory / "boot-key.pem")
    metadata = make_dirs(directory / "tuf" / "metadata", mode=DIR_MODE)
    write_atomic(metadata / "root.json", ota.root_json)
    release, image = ota.release, ota.image_path
    if release is None or image is None:
        return
    slot = make_dirs(directory / "slots" / "a", mode=DIR_MODE)
    digest, length = hashlib.sha256(), 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(slot / "image.bin", flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with image.open("rb") as src, os.fdopen(fd, "wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != release.image_sha256 or length != release.image_length:
        raise VerificationFailed(
            f"the published image of {model} {release.version} does not match its release",
            hint="check the OTA repository's targets folder", code="factory.ota.image",
        )  # fmt: skip
    write_atomic(slot / "release.json", release.manifest)
    env = {"boot_slot": "a", "upgrade_available": 0, "bootcount": 0, "bootlimit": 3}
    write_atomic(directory / "bootenv.json", _json_line(env))


def _json_line(document: Mapping[str, object]) -> bytes:
    return (json.dumps(document, sort_keys=True) + "\n").encode("utf-8")


def _issue_idevid(
    rt: Runtime, *, device_id: str, public_key: CertificatePublicKeyTypes, model: str, now: datetime
) -> x509.Certificate:
    with rt.uow.begin(read_only=True) as tx:
        active = tx.cas.active("manufacturing").name  # a rollover moves it (docs/lifecycle.md)
    return issue_device_certificate(
        issuer=rt.issuer(active),
        public_key=public_key,
        device_id=device_id,
        profile=IDEVID,
        organization=rt.settings.pki.organization,
        now=now,
        validity=timedelta(days=rt.settings.pki.idevid_validity_days),
        model=model,
    )


def _register(
    rt: Runtime, cert: x509.Certificate, *, device_id: str, model: str, source: str, now: datetime
) -> None:
    with rt.uow.begin() as tx:
        tx.devices.add(id=device_id, model=model, state="manufactured", now=now)
        issuer = issuer_name(rt, cert, tx.cas.trusted("manufacturing"))
        record_certificate(tx, cert, issuer=issuer, kind="idevid", device_id=device_id, now=now)
        tx.events.append(
            type="device.registered",
            actor=current_operator(),
            subject=f"device:{device_id}",
            details={
                "model": model,
                "source": source,
                "idevid_serial": format(cert.serial_number, "x"),
            },
            now=now,
        )


def sign_csr(rt: Runtime, *, csr_bytes: bytes, model: str, now: datetime) -> ProvisionedDevice:
    """Issue an IDevID for a key that lives elsewhere (a device's secure element) and register it.

    The device id is the CSR's CN; it must be well-formed and not yet registered.

    Raises:
        InvalidInput: The CSR is unreadable, its CN is not a valid device id, or it breaks policy.
        Conflict: A device with that id exists already.
    """
    check_model(model)
    if len(csr_bytes) > _MAX_CSR_BYTES:
        raise InvalidInput("the CSR file is larger than 64 KiB", code="factory.csr.too_large")
    csr = _load_csr(csr_bytes)
    cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise InvalidInput("the CSR must have exactly one CN: the device id", code="factory.csr.cn")
    device_id = validate_device_id(str(cns[0].value))
    check_csr(csr, expected_device_id=device_id, policy=CsrPolicy())
    with rt.uow.begin() as tx:
        if tx.devices.get(device_id) is not None:
            raise Conflict(
                f"device '{device_id}' is already registered", hint="use a new device id"
            )
    cert = _issue_idevid(rt, device_id=device_id, public_key=csr.public_key(), model=model, now=now)
    _register(rt, cert, device_id=device_id, model=model, source="factory.sign-csr", now=now)
    return ProvisionedDevice(device_id=device_id, model=model, directory=None, certificate=cert)


def _load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidInput(
            "the file is not a PKCS#10 CSR (PEM or DER)", hint="make one with 'openssl req -new'"
        ) from exc


def _device_settings(rt: Runtime, *, directory: Path, device_id: str, model: str) -> DeviceSettings:
    """What the agent of a device made by this home reads (docs/agent.md).

    Raises:
        Config: The home's settings make no valid device configuration (e.g. an ``[api]
            public_url`` that is not https).
    """
    base = rt.settings.api.public_url.rstrip("/")
    key = f"pkcs11:token={DEVICE_TOKEN};object={IDENTITY_KEY};type=private"
    raw = {
        "directory": directory,
        "device": {"id": device_id, "model": model},
        "identity": {
            "key": key + "?pin-source=file:secrets/token.pin",
            "module": rt.settings.keystore.module,
        },
        "server": {"est_url": f"{base}/.well-known/est"},
        "mqtt": {
            "host": urlsplit(base).hostname or "localhost",
            "port": rt.settings.broker.port,
            "max_payload_bytes": rt.settings.broker.max_payload_bytes,
        },
        "ota": {  # the device's builder policy (docs/supply-chain.md)
            "allowed_builders": rt.settings.supply_chain.builders_for(model),
            "max_provenance_bytes": rt.settings.supply_chain.max_provenance_bytes,
        },
    }
    return validate_model(
        DeviceSettings,
        raw,
        path=directory / DEVICE_FILE,
        hint="check [api] public_url and [broker] in the home's trustfleet.toml",
    )
