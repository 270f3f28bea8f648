"""``factory provision --protocol lwm2m``: a device made by the factory becomes an LwM2M device.

PSK mode: a fresh key goes into the device's own token (secret-key object ``lwm2m-psk``,
readable by the device with its PIN) and, encrypted by ``tf-service``, into the store as the
device's bootstrap credential (or its ``dm`` credential without bootstrap). Certificate mode
changes nothing but the device's protocol and its ``device.toml``: the device enrolls over EST
for its LDevID as an MQTT device does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from trustfleet.configfile.device import update_device_settings
from trustfleet.errors import NotFound
from trustfleet.fileio import write_atomic
from trustfleet.keystore import PinSource, open_token
from trustfleet.services._lwm2m_psk import PskVault, new_psk
from trustfleet.services._ota_keys import SERVICE_TOKEN, open_home_token
from trustfleet.services.factory import ProvisionedDevice, provision_devices
from trustfleet.services.lwm2m import create_credential, server_uri
from trustfleet.services.lwm2m_manifests import MANIFEST_KEY_FILE, manifest_public_key_pem
from trustfleet.services.runtime import Runtime

__all__ = ["PSK_LABEL", "make_lwm2m_devices", "provision_with_protocol"]

logger = logging.getLogger(__name__)

PSK_LABEL = "lwm2m-psk"
_DEVICE_TOKEN = "tf-device"  # noqa: S105  # services.factory.DEVICE_TOKEN (a label)


def _store_in_device_token(rt: Runtime, directory: Path, key: bytes) -> None:
    pin = PinSource.parse("file:secrets/token.pin", base_dir=directory).read()
    conf = directory / "softhsm2.conf"
    with open_token(module=rt.module, label=_DEVICE_TOKEN, pin=pin, conf=conf) as token:
        token.create_secret(PSK_LABEL, key)


def _manifest_key(rt: Runtime) -> bytes | None:
    try:
        return manifest_public_key_pem(rt.settings)
    except NotFound:  # a home without an OTA repository signs no firmware
        logger.warning("no TUF targets key: LwM2M devices get no manifest key")
        return None


def make_lwm2m_devices(
    rt: Runtime,
    devices: Sequence[tuple[str, Path]],
    *,
    security: Literal["psk", "cert"],
    bootstrap: bool,
    now: datetime,
) -> dict[str, str | None]:
    """Turn freshly provisioned devices (id, folder) into LwM2M devices.

    Returns:
        Each device's PSK identity (None in certificate mode).
    """
    lw = rt.settings.lwm2m
    manifest_key = _manifest_key(rt)
    keys = (
        {device_id: new_psk(lw.psk_bytes) for device_id, _ in devices} if security == "psk" else {}
    )
    rt.release_keys()  # device tokens live under other SoftHSM2 configurations
    for device_id, directory in devices:
        if device_id in keys:
            _store_in_device_token(rt, directory, keys[device_id])
    identities: dict[str, str | None] = {}
    purpose: Literal["bootstrap", "dm"] = "bootstrap" if bootstrap else "dm"
    with open_home_token(rt.settings, SERVICE_TOKEN) as token:
        vault = PskVault(token)
        for device_id, _ in devices:
            with rt.uow.begin() as tx:
                tx.devices.set_protocol(device_id, "lwm2m", now=now)
                identity = None
                if device_id in keys:
                    identity, _key = create_credential(
                        tx, vault, device_id=device_id, purpose=purpose,
                        size_bytes=lw.psk_bytes, now=now, key=keys[device_id],
                    )  # fmt: skip
            identities[device_id] = identity
    for device_id, directory in devices:
        if manifest_key is not None:
            write_atomic(directory / MANIFEST_KEY_FILE, manifest_key)
        section = {
            "security": security,
            "server_uri": server_uri(rt.settings),
            "bootstrap": bootstrap and security == "psk",
            "psk_identity": identities[device_id] or "",
            "psk_label": PSK_LABEL,
            "manifest_key": MANIFEST_KEY_FILE,
        }
        update_device_settings(directory, {"lwm2m": section})
    return identities


def provision_with_protocol(
    rt: Runtime,
    *,
    out_dir: Path,
    count: int,
    model: str,
    protocol: Literal["mqtt", "lwm2m"],
    security: Literal["psk", "cert"],
    bootstrap: bool,
    now: datetime,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list[ProvisionedDevice], dict[str, str | None]]:
    """``factory provision``: devices as :func:`~trustfleet.services.factory.provision_devices`
    makes them, then, for ``protocol`` lwm2m, made LwM2M devices (:func:`make_lwm2m_devices`;
    ``bootstrap`` only in PSK mode).

    Returns:
        The devices, and each LwM2M device's PSK identity (None in certificate mode; empty for
        MQTT devices).
    """
    devices = provision_devices(
        rt, out_dir=out_dir, count=count, model=model, now=now, on_progress=on_progress
    )
    if protocol != "lwm2m":
        return devices, {}
    pairs = [(d.device_id, d.directory) for d in devices if d.directory is not None]
    identities = make_lwm2m_devices(
        rt, pairs, security=security, bootstrap=bootstrap and security == "psk", now=now
    )
    return devices, identities
