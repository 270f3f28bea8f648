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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trustfleet.audit.context import current_operator
from trustfleet.ota.manifest import image_target
from trustfleet.ota.repository import (
    RepoState,
    describe,
    refresh_timestamp,
    timestamp_due,
)
from trustfleet.ota.repository import (
    rotate_online_keys as _rotate_online_keys,
)
from trustfleet.ota.repository import (
    rotate_root as _rotate_root,
)
from trustfleet.ota.signer import Pkcs11Signer, public_key_for
from trustfleet.ota.versions import check_model
from trustfleet.services._ota_access import authorize_device
from trustfleet.services._ota_init import create_ota_repository
from trustfleet.services._ota_keys import (
    SERVICE_TOKEN,
    KeyRef,
    boot_key_sha256,
    load_key_map,
    open_home_token,
    open_signers,
    repo_files,
    root_token,
    save_key_map,
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
    "init_repository",
    "publish_release",
    "refresh_timestamp_if_due",
    "repository_status",
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


def init_repository(rt: Runtime | ServerSettings, *, now: datetime) -> dict[str, Any]:
    """Create the OTA tokens, keys and repository of a home (``server init``, ``ota init``).

    Writes ``public/boot-key.pem``, ``public/tuf-root.json`` and the event
    ``ota.repository.created``.

    Returns:
        The new repository's status (see :func:`repository_status`).

    Raises:
        Conflict: The home already has a repository (code ``ota.repo.exists``).
    """
    with _runtime(rt) as opened:
        state = create_ota_repository(opened.settings, opened.uow, now=now)
        return _status(opened.settings, state)


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


def _root_keyids(state: RepoState) -> list[str]:
    return list(state.root.signed.roles["root"].keyids)


def rotate_root(rt: Runtime, *, now: datetime) -> dict[str, Any]:
    """Root key ceremony: a new key in each root token and a new root version.

    The new root is signed by the previous root's keys (all that can be opened, at least the
    threshold) and by every new key. Writes the event ``ota.root.rotated``.

    Returns:
        The repository's status after the rotation.

    Raises:
        VerificationFailed: The old or the new threshold is not met.
    """
    settings, files = rt.settings, repo_files(rt.settings)
    with files.locked():
        state = load_state(files)
        keys = load_key_map(settings)
        version = state.root.signed.version + 1
        label = f"tuf-root-r{version}"
        with contextlib.ExitStack() as stack:
            old = stack.enter_context(open_signers(settings, _root_keyids(state), keys))
            new: list[Pkcs11Signer] = []
            for i in range(1, settings.ota.root_keys + 1):
                session = stack.enter_context(open_home_token(settings, root_token(i)))
                key = session.generate_ec_key(label, curve="P-256")
                new.append(Pkcs11Signer(key))
                keys[public_key_for(key).keyid] = KeyRef(token=root_token(i), label=label)
            rotated = _rotate_root(
                state,
                new_keys=[s.public_key for s in new],
                threshold=settings.ota.root_threshold,
                old_signers=old,
                new_signers=new,
                expiry=expiry_of(settings.ota),
                now=now,
            )
        _commit_rotation(
            rt, files, rotated, keys, event="ota.root.rotated", previous=state, now=now
        )
    return _status(settings, rotated)


def rotate_online_keys(rt: Runtime, *, now: datetime) -> dict[str, Any]:
    """Replace the snapshot and timestamp keys (in ``tf-service``) through a new root version.

    Needs the root tokens (a threshold of root signatures). Writes ``ota.online_keys.rotated``.

    Returns:
        The repository's status after the rotation.
    """
    settings, files = rt.settings, repo_files(rt.settings)
    with files.locked():
        state = load_state(files)
        keys = load_key_map(settings)
        version = state.root.signed.version + 1
        with contextlib.ExitStack() as stack:
            root_signers = stack.enter_context(open_signers(settings, _root_keyids(state), keys))
            session = stack.enter_context(open_home_token(settings, SERVICE_TOKEN))
            online: dict[str, Pkcs11Signer] = {}
            for role in ("snapshot", "timestamp"):
                label = f"tuf-{role}-r{version}"
                key = session.generate_ec_key(label, curve="P-256")
                online[role] = Pkcs11Signer(key)
                keys[public_key_for(key).keyid] = KeyRef(token=SERVICE_TOKEN, label=label)
            rotated = _rotate_online_keys(
                state,
                snapshot_key=online["snapshot"].public_key,
                timestamp_key=online["timestamp"].public_key,
                signers={
                    "root": root_signers,
                    "snapshot": [online["snapshot"]],
                    "timestamp": [online["timestamp"]],
                },
                expiry=expiry_of(settings.ota),
                now=now,
            )
        _commit_rotation(
            rt, files, rotated, keys, event="ota.online_keys.rotated", previous=state, now=now
        )
    return _status(settings, rotated)


def _commit_rotation(
    rt: Runtime,
    files: Any,
    state: RepoState,
    keys: dict[str, KeyRef],
    *,
    event: str,
    previous: RepoState,
    now: datetime,
) -> None:
    roles = ["root"]
    if state.timestamp.signed.version != previous.timestamp.signed.version:
        roles += ["snapshot", "timestamp"]
    root = state.root.signed
    with rt.uow.begin() as tx:
        tx.events.append(
            type=event,
            actor=current_operator(),
            subject="ota:repository",
            details={
                "root_version": root.version,
                "root_keyids": list(root.roles["root"].keyids),
                "snapshot_keyids": list(root.roles["snapshot"].keyids),
                "timestamp_keyids": list(root.roles["timestamp"].keyids),
            },
            now=now,
        )
        save_key_map(rt.settings, keys)
        write_state(rt.settings, files, state, roles)
    logger.info("%s: root version %d", event, root.version)
