"""The factory's TPM step for simulated devices: manufacture the swtpm, create the AK.

Each simulated device gets a TPM in ``DEVDIR/tpm/`` made by the *simulated TPM vendor*
(``keystore.tpm.ManufacturerCa``, its CA files in ``HOME/tpm-vendor/``): ``swtpm_setup``
creates the EKs and certifies them with that CA, then the factory creates the attestation key
(``Tpm.create_ak``: persistent at 0x81010002) and records its public parts in
``DEVDIR/tpm/ak.json`` (the format of ``agent.platform.measured_boot.DeviceTpm.save_ak``;
services may not import the agent, so it is written here). The vendor's CA certificates are
added to the service's ``[attestation] tpm_manufacturer_cas`` bundle, which AK enrollment checks EK
certificates against. The vendor CA stands for the TPM manufacturer: it is no TrustFleet key.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Final

from trustfleet.errors import Config
from trustfleet.fileio import write_atomic
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance
from trustfleet.services.runtime import Runtime

__all__ = ["VENDOR_FOLDER", "manufacture_device_tpm", "publish_vendor_cas", "vendor_ca"]

logger = logging.getLogger(__name__)

VENDOR_FOLDER: Final = "tpm-vendor"
"""The simulated TPM vendor's CA folder in a server home."""
TPM_FOLDER: Final = "tpm"
_STATE_FILE: Final = "tpm2-00.permall"
_MAX_BUNDLE_BYTES: Final = 1024 * 1024


def vendor_ca(rt: Runtime) -> ManufacturerCa:
    """The simulated TPM vendor of this home (``HOME/tpm-vendor``)."""
    return ManufacturerCa((rt.settings.home / VENDOR_FOLDER).resolve())


def swtpm_available() -> bool:
    """Whether swtpm and swtpm_setup are installed (else devices get no TPM)."""
    return all(shutil.which(tool) for tool in ("swtpm", "swtpm_setup"))


def manufacture_device_tpm(rt: Runtime, directory: Path) -> bool:
    """Give the device in ``directory`` a manufactured TPM with its AK.

    Returns:
        Whether the device has a TPM now (False when swtpm is not installed).

    Raises:
        Config: The device folder's path is too long for the TPM's unix socket.
        Unavailable: swtpm_setup or the TPM failed.
    """
    if not swtpm_available():
        logger.warning("swtpm is not installed: %s gets no TPM", directory.name)
        return False
    from trustfleet.keystore.tpm import Tpm  # noqa: PLC0415  # tpm2-pytss, only here

    ca = vendor_ca(rt)
    state = directory / TPM_FOLDER
    with SwtpmInstance(state, ca=ca) as swtpm, Tpm(tcti=swtpm.tcti) as tpm:
        ak = tpm.create_ak(replace=True)
    ca.protect()  # swtpm_localca made its keys 0640 and honours the umask: now 0600
    document = {
        "handle": ak.handle,
        "name": ak.name.hex(),
        "qualified_name": ak.qualified_name.hex(),
        "public": ak.public.hex(),
        "public_pem": ak.public_pem,
    }
    write_atomic(state / "ak.json", (json.dumps(document, sort_keys=True) + "\n").encode())
    publish_vendor_cas(rt, ca)
    return (state / _STATE_FILE).is_file()


def publish_vendor_cas(rt: Runtime, ca: ManufacturerCa) -> None:
    """Add the vendor's CA certificates to the ``tpm_manufacturer_cas`` bundle (idempotent).

    Raises:
        Config: The bundle exists but is too large to be one.
    """
    bundle = rt.settings.path(rt.settings.attestation.tpm_manufacturer_cas)
    current = bundle.read_bytes() if bundle.is_file() else b""
    if len(current) > _MAX_BUNDLE_BYTES:
        raise Config(f"{bundle} is too large for a CA bundle", code="factory.tpm.cas")
    missing = [
        pem for pem in (path.read_bytes() for path in ca.certificate_paths())
        if pem.strip() not in current
    ]  # fmt: skip
    if not missing:
        return
    added = b"".join(pem if pem.endswith(b"\n") else pem + b"\n" for pem in missing)
    write_atomic(bundle, current + added)
    logger.info("added the TPM vendor's CA certificates to %s", bundle)
