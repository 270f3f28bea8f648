"""OTA use cases: the TUF repository, releases, and what the factory gives a device.

The TUF logic is pure (:mod:`trustfleet.ota.repository`); this module adds the tokens, the
repository's files and the store. Every change of the repository writes its security event in
the same transaction, and the metadata files are written last inside that transaction's block,
so a failure leaves no half-published release (target files are content-addressed and
harmless on their own).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trustfleet.errors import Conflict
from trustfleet.ota.manifest import image_target
from trustfleet.ota.repository import (
    RepoState,
    describe,
    refresh_timestamp,
    timestamp_due,
)
from trustfleet.ota.versions import check_model
from trustfleet.services._offline import (
    OFFLINE_CONF,
    ROOT_CA_TOKEN,
    OfflineFolder,
    new_offline_pins,
    write_pins,
)
from trustfleet.services._ota_access import authorize_device
from trustfleet.services._ota_ceremony import rotate_online_keys, rotate_root
from trustfleet.services._ota_init import create_ota_repository
from trustfleet.services._ota_keys import (
    boot_key_sha256,
    load_key_map,
    open_signers,
    repo_files,
    root_token,
)
from trustfleet.services._ota_release import build_release, publish_release
from trustfleet.services._ota_state import expiry_of, load_state, write_state
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import ReleaseRecord

__all__ = [
    "DeviceOtaBundle",
    "authorize_device",
    "build_release",
    "device_provisioning",
    "init_offline_repository",
    "init_repository",
    "publish_release",
    "refresh_timestamp_if_due",
    "repository_status",
    "root_token",
    "rotate_online_keys",
    "rotate_root",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceOtaBundle:
    """What the factory writes into a new device for updates.

    Attributes:
        root_json: The current trusted TUF root (bytes of the newest ``N.root.json``).
        boot_key_sha256: SHA-256 (hex) over the boot key's SPKI DER, fused into the device.
        release: The newest published release of the device's model, if any.
        image_path: The full image of that release in the repository's targets folder.
    """

    root_json: bytes
    boot_key_sha256: str
    release: ReleaseRecord | None
    image_path: Path | None


def device_provisioning(rt: Runtime, *, model: str) -> DeviceOtaBundle:
    """What a new device of ``model`` gets from the factory (docs/ota.md, "Device side").

    Args:
        rt: The server home's runtime.
        model: The device's hardware model.

    Returns:
        The trusted root, the boot key digest, and the newest release of the model.

    Raises:
        InvalidInput: The model name is malformed.
        NotFound: The home has no OTA repository (code ``ota.repo.missing``) or boot key.
    """
    check_model(model)
    files = repo_files(rt.settings)
    root_json = files.latest_root()
    digest = boot_key_sha256(rt.settings)
    with rt.uow.begin(read_only=True) as tx:
        release = tx.releases.latest(model)
    image_path = None
    if release is not None:
        image_path = files.target_file(
            image_target(release.model, release.version), release.image_sha256
        )
    return DeviceOtaBundle(
        root_json=root_json, boot_key_sha256=digest, release=release, image_path=image_path
    )


@contextlib.contextmanager
def _runtime(rt: Runtime | ServerSettings) -> Iterator[Runtime]:
    if isinstance(rt, Runtime):
        yield rt
        return
    opened = Runtime.open(rt)
    try:
        yield opened
    finally:
        opened.close()


def init_repository(
    rt: Runtime | ServerSettings,
    *,
    offline: OfflineFolder,
    offline_pins: Mapping[str, str],
    now: datetime,
) -> dict[str, Any]:
    """Create the OTA tokens, keys and repository of a home (``server init``, ``ota init``).

    The TUF root tokens are made in the offline folder with ``offline_pins`` (by file name,
    ``tf-tuf-root-1.pin``, ``tf-tuf-root-1.so-pin``…). Writes ``public/boot-key.pem``,
    ``public/tuf-root.json`` and the event ``ota.repository.created``.

    Returns:
        The new repository's status (see :func:`repository_status`).

    Raises:
        Conflict: The home already has a repository (code ``ota.repo.exists``).
    """
    with _runtime(rt) as opened:
        opened.release_keys()  # the offline configuration becomes active meanwhile
        state = create_ota_repository(
            opened.settings, opened.uow, offline=offline, offline_pins=offline_pins, now=now
        )
        return _status(opened.settings, state)


def init_offline_repository(
    settings: ServerSettings, *, offline: Path, pins_out: Path | None, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """``ota init``: the repository of a home made before OTA, its TUF root tokens in the
    offline folder ``offline`` (made if new), their PINs written to ``pins_out`` (0600 files,
    written first) or returned to be shown once.

    Returns:
        The repository's status, and the PINs by file name (empty if written).

    Raises:
        Conflict: The home already has a repository (code ``ota.repo.exists``); nothing made.
    """
    if repo_files(settings).exists():
        raise Conflict(
            f"an OTA repository exists already in {repo_files(settings).root}",
            hint="use 'trustfleet ota status' to inspect it",
            code="ota.repo.exists",
        )
    if (offline / OFFLINE_CONF).exists():
        folder = OfflineFolder.open(offline)
    else:
        folder = OfflineFolder.create(offline)
    pins = {
        name: pin
        for name, pin in new_offline_pins(settings.ota.root_keys).items()
        if not name.startswith(f"{ROOT_CA_TOKEN}.")
    }
    if pins_out is not None:
        write_pins(pins_out, pins)
    doc = init_repository(settings, offline=folder, offline_pins=pins, now=now)
    return doc, {} if pins_out is not None else pins


def _status(settings: ServerSettings, state: RepoState) -> dict[str, Any]:
    return {"repo_dir": str(repo_files(settings).root), **describe(state)}


def repository_status(rt: Runtime) -> dict[str, Any]:
    """Roles, versions, expiries, key ids and thresholds of the repository, as JSON-ready data.

    Raises:
        NotFound: The home has no repository (code ``ota.repo.missing``).
    """
    return _status(rt.settings, load_state(repo_files(rt.settings)))


def refresh_timestamp_if_due(rt: Runtime, *, now: datetime, force: bool = False) -> bool:
    """Re-sign the timestamp if it expires within ``[ota] timestamp_refresh_margin_hours``.

    Safe to call from several processes: the check is repeated under the repository lock.

    Args:
        rt: The server home's runtime.
        now: The current time.
        force: Re-sign even if not due.

    Returns:
        Whether a new timestamp was written.
    """
    settings, files = rt.settings, repo_files(rt.settings)
    margin = timedelta(hours=settings.ota.timestamp_refresh_margin_hours)
    if not force and not timestamp_due(load_state(files), now=now, margin=margin):
        return False
    with files.locked():
        state = load_state(files)
        if not force and not timestamp_due(state, now=now, margin=margin):
            return False
        keys = load_key_map(settings)
        keyid = state.root.signed.roles["timestamp"].keyids[0]
        with open_signers(settings, [keyid], keys) as signers:
            new = refresh_timestamp(
                state, signer=signers[0], expiry=expiry_of(settings.ota), now=now
            )
        write_state(settings, files, new, ["timestamp"])
    logger.info("refreshed the TUF timestamp (version %d)", new.timestamp.signed.version)
    return True
