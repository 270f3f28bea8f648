"""The simulated device's firmware pull (object 5): manifest, image, checks, install.

Package URI written -> the manifest is fetched by Block2 from the same server and verified with
the trusted key (``[lwm2m] manifest_key``); then the image by Block2, checked against the
manifest's size and SHA-256 and kept in ``firmware_dir`` (State 1 -> 2). On Update: State 3,
"install" (the new version becomes the running one) and Update Result 1; any failure sets the
matching Update Result (5 integrity, 6 unsupported package, 7 invalid URI) and State 0.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.errors import TrustFleetError, VerificationFailed
from trustfleet.fileio import read_bounded, write_atomic
from trustfleet.lwm2m.coap import Code, Option, request
from trustfleet.lwm2m.manifest import Manifest, verify_manifest
from trustfleet.sim._lwm2m_coap import BlockDownload
from trustfleet.sim._lwm2m_state import DeviceState, save_state
from trustfleet.sim._lwm2m_tree import (
    FW_DOWNLOADED,
    FW_IDLE,
    RESULT_INTEGRITY,
    RESULT_UNSUPPORTED,
    RESULT_URI_INVALID,
)

if TYPE_CHECKING:
    from trustfleet.sim._lwm2m_link import CoapLink
    from trustfleet.sim.lwm2m_device import Device

__all__ = ["MAX_IMAGE_BYTES", "MAX_MANIFEST_BYTES", "download_firmware", "install_firmware"]

logger = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 16_384
MAX_KEY_BYTES = 16_384
MAX_IMAGE_BYTES = 64 * 1024 * 1024
IMAGE_FILE = "image.bin"
PENDING_FILE = "pending-version"


async def fetch(link: CoapLink, path: tuple[str, ...], *, max_bytes: int) -> bytes:
    """GET ``path`` block by block (RFC 7959 Block2), at most ``max_bytes``."""
    download = BlockDownload(path=path, max_bytes=max_bytes)
    while not download.done:
        block = download.next_block()
        message = request(
            Code.GET,
            path=path,
            message_id=link.next_id(),
            token=link.new_token(),
            options=((Option.BLOCK2, block.encode()),),
        )
        download.accept(await link.exchange(message))
    return bytes(download.received)


def _verify_manifest(device: Device, data: bytes) -> Manifest:
    """The manifest, verified with the trusted key, for this model, not older than the last one."""
    key_path = device.settings.path(device.section.manifest_key)
    raw = read_bounded(key_path, max_bytes=MAX_KEY_BYTES) if key_path.exists() else None
    try:
        key = serialization.load_pem_public_key(raw) if raw is not None else None
    except ValueError:
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationFailed(
            f"no trusted EC manifest key at {key_path}", code="lwm2m.manifest.key"
        )
    return verify_manifest(
        data,
        public_key=key,
        model=device.settings.device.model,
        min_sequence=device.state.sequence + 1,
        max_bytes=MAX_MANIFEST_BYTES,
    )


async def download_firmware(device: Device, link: CoapLink, uri: str) -> None:
    """Fetch and check the package named by the Package URI; State 2 or a failure result."""
    tree = device.tree
    parts = urlsplit(uri)
    path = tuple(part for part in parts.path.split("/") if part)
    if not path:
        tree.set_firmware(state=FW_IDLE, result=RESULT_URI_INVALID)
        return
    try:
        manifest_bytes = await fetch(link, path, max_bytes=MAX_MANIFEST_BYTES)
        manifest = _verify_manifest(device, manifest_bytes)
    except VerificationFailed as exc:
        logger.warning("firmware manifest refused: %s", exc.code)
        tree.set_firmware(state=FW_IDLE, result=RESULT_UNSUPPORTED)
        return
    except TrustFleetError as exc:
        logger.warning("firmware manifest download failed: %s", exc.code)
        tree.set_firmware(state=FW_IDLE, result=RESULT_URI_INVALID)
        return
    image_parts = tuple(part for part in manifest.image_path.split("/") if part)
    try:
        image = await fetch(link, image_parts, max_bytes=min(manifest.image_size, MAX_IMAGE_BYTES))
    except TrustFleetError as exc:
        logger.warning("firmware image download failed: %s", exc.code)
        tree.set_firmware(state=FW_IDLE, result=RESULT_INTEGRITY)
        return
    digest = hashlib.sha256(image).hexdigest()
    if len(image) != manifest.image_size or digest != manifest.image_sha256.lower():
        tree.set_firmware(state=FW_IDLE, result=RESULT_INTEGRITY)
        return
    device.firmware_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(device.firmware_dir / IMAGE_FILE, image)
    write_atomic(
        device.firmware_dir / PENDING_FILE, f"{manifest.version}\n{manifest.sequence}".encode()
    )
    tree.set_firmware(state=FW_DOWNLOADED)


def install_firmware(device: Device) -> None:
    """Install the downloaded image: it becomes the running version (a reboot follows)."""
    version, sequence = (device.firmware_dir / PENDING_FILE).read_text(encoding="utf-8").split()
    device.state = DeviceState(
        version=version,
        sequence=int(sequence),
        dm_uri=device.state.dm_uri,
        dm_identity=device.state.dm_identity,
    )
    save_state(device.firmware_dir, device.state)
    (device.firmware_dir / PENDING_FILE).unlink()
    device.tree.installed(version)
    device.run.firmware_version = version
