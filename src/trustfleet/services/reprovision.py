"""Return to service: a wiped device goes back through the factory (docs/lifecycle.md).

A device folder whose agent wiped itself (``decommissioned.json``, written by
``agent.decommission``) holds the hardware (its TPM: the swtpm state with the same EKs) and the
remains of a destroyed identity. :func:`reprovision_device` gives that hardware a new identity:

1. the folder must carry the wipe marker and its device must be ``decommissioned`` in the store;
2. a temporary sibling folder receives a fresh SoftHSM2 token (new PINs, a new identity key
   generated in it), the TPM state copied from the old folder (the same EK; the TPM gets a new
   AK), the boot chain and update trust, a new ``device.toml`` and an IDevID for a new device id
   from the active manufacturing CA;
3. one transaction registers the new id ``manufactured`` with ``device.registered`` and
   ``device.reprovisioned`` (which names the old id);
4. the old folder is swapped for the new one (``DEVDIR/<new-id>/``) and removed.

A failure before step 3 removes the temporary folder and leaves the old one as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet.audit.context import current_operator
from trustfleet.configfile.device import load_device_settings, save_device_settings
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import read_bounded, write_atomic
from trustfleet.keystore import write_softhsm_conf
from trustfleet.pki import new_device_id
from trustfleet.services._certs import issuer_name, record_certificate
from trustfleet.services._factory_tpm import TPM_FOLDER, manufacture_device_tpm
from trustfleet.services.factory import (
    _device_settings,
    _issue_idevid,
    _make_device_token,
    _ota_bundle,
    _write_boot_chain,
)
from trustfleet.services.runtime import Runtime

__all__ = [
    "MARKER",
    "REPROVISIONED_EVENT",
    "Reprovisioned",
    "check_wiped",
    "folder_lock",
    "reprovision_device",
]

MARKER: Final = "decommissioned.json"
"""The agent's wipe marker (``agent.decommission.MARKER``; services may not import the agent)."""
REPROVISIONED_EVENT: Final = "device.reprovisioned"
_TPM_STATE: Final = "tpm2-00.permall"
_MAX_MARKER_BYTES: Final = 64 * 1024
_HINT: Final = "give the folder of a device whose agent wiped itself ('device decommission')"


@dataclass(frozen=True)
class Reprovisioned:
    """A device returned to service under a new identity."""

    device_id: str
    previous_device_id: str
    model: str
    directory: Path
    certificate: x509.Certificate
    tpm: bool
    allowed_builders: tuple[str, ...] = ()
    """The builders whose releases it installs (``[ota] allowed_builders``; empty: any)."""


def check_wiped(directory: Path) -> tuple[str, str]:
    """The old ``(device_id, model)`` of a wiped device folder.

    Raises:
        InvalidInput: Not a real folder, no wipe marker, or a marker for another device
            (code ``factory.reprovision.not_wiped``).
    """
    problem = None
    if directory.is_symlink() or not directory.is_dir():
        problem = "is not a device folder"
    elif not (directory / MARKER).is_file() or (directory / MARKER).is_symlink():
        problem = f"has no {MARKER}: its agent did not wipe it"
    if problem is None:
        settings = load_device_settings(directory)
        marked = _marker_device(directory / MARKER)
        if marked != settings.device.id:
            problem = f"has a {MARKER} for another device ({marked!r})"
        else:
            return settings.device.id, settings.device.model
    raise InvalidInput(f"{directory} {problem}; it cannot be reprovisioned", hint=_HINT,
                       code="factory.reprovision.not_wiped")  # fmt: skip


def _marker_device(path: Path) -> str | None:
    data = read_bounded(path, max_bytes=_MAX_MARKER_BYTES)
    try:
        doc = json.loads(data or b"")
        device_id = doc["evidence"]["device_id"]
    except (ValueError, TypeError, KeyError):
        return None
    return device_id if isinstance(device_id, str) else None


def _require_decommissioned(rt: Runtime, device_id: str) -> None:
    with rt.uow.begin(read_only=True) as tx:
        device = tx.devices.get(device_id)
    if device is None or device.state != "decommissioned":
        state = "unknown to this home" if device is None else device.state
        raise Conflict(
            f"device '{device_id}' is {state}, not decommissioned: it cannot be reprovisioned",
            hint="decommission it first ('trustfleet device decommission')",
            code="factory.reprovision.state",
        )


def reprovision_device(rt: Runtime, *, directory: Path, now: datetime) -> Reprovisioned:
    """Give the wiped device in ``directory`` a new identity (see the module docstring).

    Raises:
        InvalidInput: The folder is not a wiped device folder.
        Conflict: Its device is not decommissioned in this home.
        Unavailable: The token, the TPM or the store failed (the folder is unchanged).
    """
    check_wiped(directory)
    with folder_lock(directory):
        return _reprovision_locked(rt, directory=directory, now=now)


@contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the device folder (two reprovisions of one folder exclude
    each other; the loser finds the folder busy or gone).

    Raises:
        Conflict: Another reprovision holds it (code ``factory.reprovision.busy``).
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict(
                f"{directory} is being reprovisioned by another process",
                hint="wait for it to finish",
                code="factory.reprovision.busy",
            ) from exc
        yield
    finally:
        os.close(fd)


def _reprovision_locked(rt: Runtime, *, directory: Path, now: datetime) -> Reprovisioned:
    old_id, model = check_wiped(directory)  # again, under the lock: the folder may be gone
    _require_decommissioned(rt, old_id)
    ota = _ota_bundle(rt, model=model)
    new_id = new_device_id()
    parent = directory.resolve().parent
    staging = parent / f".{new_id}.reprovision-{secrets.token_hex(4)}"
    rt.release_keys()  # the device token lives under another SoftHSM2 configuration
    try:
        public_key = _make_device_token(rt, staging)
        cert = _issue_idevid(rt, device_id=new_id, public_key=public_key, model=model, now=now)
        has_tpm = _move_hardware(rt, directory, staging, with_tpm=ota is not None)
        if ota is not None:
            _write_boot_chain(rt, staging, ota=ota, model=model)
        bundle = rt.settings.path("public/ca-bundle.pem").read_bytes()
        write_atomic(staging / "ca-bundle.pem", bundle)
        settings = _device_settings(rt, directory=staging, device_id=new_id, model=model)
        save_device_settings(settings)
        write_atomic(staging / "idevid.pem", cert.public_bytes(serialization.Encoding.PEM))
        _register(rt, cert, device_id=new_id, old_id=old_id, model=model, now=now)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = _swap(directory, staging, parent / new_id)
    return Reprovisioned(device_id=new_id, previous_device_id=old_id, model=model,
                         directory=final, certificate=cert, tpm=has_tpm,
                         allowed_builders=tuple(settings.ota.allowed_builders))  # fmt: skip


def _move_hardware(rt: Runtime, old: Path, staging: Path, *, with_tpm: bool) -> bool:
    """Copy the TPM's state (its EKs) into ``staging`` and give it a new AK; whether it has one.

    Only the TPM's NV state is hardware: the old AK record, sealed blobs, logs and sockets stay
    behind. The old folder is only read.
    """
    state = old / TPM_FOLDER / _TPM_STATE
    if not with_tpm or not state.is_file() or state.is_symlink():
        return False
    target = staging / TPM_FOLDER
    os.mkdir(target, 0o700)
    shutil.copy2(state, target / _TPM_STATE)
    return manufacture_device_tpm(rt, staging)  # manufactured already: only the new AK


def _register(
    rt: Runtime, cert: x509.Certificate, *, device_id: str, old_id: str, model: str, now: datetime
) -> None:
    serial = format(cert.serial_number, "x")
    with rt.uow.begin() as tx:
        if tx.devices.require(old_id).state != "decommissioned":  # checked again, in the tx
            raise Conflict(f"device '{old_id}' is not decommissioned",
                           code="factory.reprovision.state")  # fmt: skip
        tx.devices.add(id=device_id, model=model, state="manufactured", now=now)
        issuer = issuer_name(rt, cert, tx.cas.trusted("manufacturing"))
        record_certificate(tx, cert, issuer=issuer, kind="idevid", device_id=device_id, now=now)
        actor, subject = current_operator(), f"device:{device_id}"
        details = {"model": model, "source": "factory.reprovision", "idevid_serial": serial}
        tx.events.append(type="device.registered", actor=actor, subject=subject,
                         details=details, now=now)  # fmt: skip
        tx.events.append(type=REPROVISIONED_EVENT, actor=actor, subject=subject,
                         details={"previous_device_id": old_id, "idevid_serial": serial},
                         now=now)  # fmt: skip


def _swap(old: Path, staging: Path, final: Path) -> Path:
    """Put the new folder in place of the old one; the token's configuration follows it."""
    retired = old.resolve().parent / f".{old.name}.retired-{secrets.token_hex(4)}"
    os.rename(old, retired)
    try:
        os.rename(staging, final)
    except OSError:
        os.rename(retired, old)
        raise
    write_softhsm_conf(final / "softhsm2.conf", token_dir=final / "tokens")
    shutil.rmtree(retired, ignore_errors=True)
    return final
