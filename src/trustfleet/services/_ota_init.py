"""Creating the OTA keys and the initial TUF repository of a server home."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import Signer, SSlibKey  # type: ignore[attr-defined]

from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict
from trustfleet.fileio import write_atomic
from trustfleet.keystore import Pkcs11EcPrivateKey, TokenSession, init_token, open_token
from trustfleet.ota.repository import RepoKeys, RepoState, create_repository
from trustfleet.ota.signer import public_key_for
from trustfleet.services._offline import OfflineFolder, module_of
from trustfleet.services._ota_keys import (
    BOOT_KEY_LABEL,
    BOOT_KEY_PEM,
    RELEASE_TOKEN,
    ROOT_LABEL,
    SERVICE_TOKEN,
    KeyRef,
    ensure_token,
    home_signer,
    offline_signer,
    open_home_token,
    repo_files,
    root_token,
    save_key_map,
)
from trustfleet.services._ota_state import expiry_of, write_state
from trustfleet.settings import ServerSettings
from trustfleet.store import UnitOfWork

__all__ = ["create_ota_repository"]

logger = logging.getLogger(__name__)

_INITIAL_LABELS = {
    "targets": (RELEASE_TOKEN, "tuf-targets"),
    "snapshot": (SERVICE_TOKEN, "tuf-snapshot"),
    "timestamp": (SERVICE_TOKEN, "tuf-timestamp"),
}


def create_ota_repository(
    settings: ServerSettings,
    uow: UnitOfWork,
    *,
    offline: OfflineFolder,
    offline_pins: Mapping[str, str],
    now: datetime,
) -> RepoState:
    """Create the OTA tokens and keys, the boot key, and root/targets/snapshot/timestamp v1.

    The root tokens ``tf-tuf-root-1..N`` are made in the offline folder with the PINs
    ``offline_pins`` (by file name: ``tf-tuf-root-1.pin``, ``tf-tuf-root-1.so-pin``…); the
    home keeps none of them. Home tokens whose PIN file exists are reused (``tf-service``); the
    others are created.

    Raises:
        Conflict: The home already has a repository (code ``ota.repo.exists``).
    """
    files = repo_files(settings)
    if files.exists():
        raise Conflict(
            f"an OTA repository exists already in {files.root}",
            hint="use 'trustfleet ota status' to inspect it",
            code="ota.repo.exists",
        )
    pins = offline_pins
    roots = _offline_root_keys(settings, offline=offline, pins=pins)
    online = _online_keys(settings)
    signers: dict[str, list[Signer]] = {
        "root": [
            offline_signer(
                settings, offline.conf, ref, pin=offline_pins[f"{ref.token}.pin"], key=key
            )
            for key, ref in roots
        ],
        **{role: [home_signer(settings, ref, key=key)] for role, (key, ref) in online.items()},
    }
    keys = RepoKeys(
        root=tuple(key for key, _ in roots),
        root_threshold=settings.ota.root_threshold,
        targets=online["targets"][0],
        snapshot=online["snapshot"][0],
        timestamp=online["timestamp"][0],
    )
    state = create_repository(keys=keys, signers=signers, expiry=expiry_of(settings.ota), now=now)
    key_map = {key.keyid: ref for key, ref in [*roots, *online.values()]}
    _store_initial(settings, uow, state=state, key_map=key_map, now=now)
    logger.info("created the OTA repository in %s", files.root)
    return state


def _store_initial(
    settings: ServerSettings,
    uow: UnitOfWork,
    *,
    state: RepoState,
    key_map: dict[str, KeyRef],
    now: datetime,
) -> None:
    """The event, the key map and the metadata files, under the lock, in one transaction."""
    files = repo_files(settings)
    with files.locked(), uow.begin() as tx:
        tx.events.append(
            type="ota.repository.created",
            actor=current_operator(),
            subject="ota:repository",
            details={
                "root_version": state.root.signed.version,
                "root_threshold": settings.ota.root_threshold,
                "root_keyids": list(state.root.signed.roles["root"].keyids),
            },
            now=now,
        )
        save_key_map(settings, key_map)
        write_state(settings, files, state, ["root", "targets", "snapshot", "timestamp"])


def _offline_root_keys(
    settings: ServerSettings, *, offline: OfflineFolder, pins: Mapping[str, str]
) -> list[tuple[SSlibKey, KeyRef]]:
    """A new token per TUF root key in the offline folder, each with its own PIN."""
    module = module_of(settings)
    made: list[tuple[SSlibKey, KeyRef]] = []
    for i in range(1, settings.ota.root_keys + 1):
        token = root_token(i)
        pin, so_pin = pins[f"{token}.pin"], pins[f"{token}.so-pin"]
        init_token(module=module, conf=offline.conf, label=token, so_pin=so_pin, user_pin=pin)
        with open_token(module=module, label=token, pin=pin, conf=offline.conf) as session:
            key = session.generate_ec_key(ROOT_LABEL, curve="P-256")
            made.append((public_key_for(key), KeyRef(token=token, label=ROOT_LABEL)))
    return made


def _online_keys(settings: ServerSettings) -> dict[str, tuple[SSlibKey, KeyRef]]:
    """The targets, snapshot and timestamp keys and the boot key, in the home's tokens."""
    made: dict[str, tuple[SSlibKey, KeyRef]] = {}
    with contextlib.ExitStack() as stack:
        sessions: dict[str, TokenSession] = {}
        for label in (RELEASE_TOKEN, SERVICE_TOKEN):
            ensure_token(settings, label)
            sessions[label] = stack.enter_context(open_home_token(settings, label))
        for role, (token, label) in _INITIAL_LABELS.items():
            key = sessions[token].generate_ec_key(label, curve="P-256")
            made[role] = (public_key_for(key), KeyRef(token=token, label=label))
        boot = sessions[RELEASE_TOKEN].generate_ec_key(BOOT_KEY_LABEL, curve="P-256")
        _write_boot_key(settings, boot)
    return made


def _write_boot_key(settings: ServerSettings, boot: Pkcs11EcPrivateKey) -> None:
    pem = boot.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(settings.path(BOOT_KEY_PEM), pem)
