"""Creating the OTA keys and the initial TUF repository of a server home."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict
from trustfleet.fileio import write_atomic
from trustfleet.keystore import Pkcs11EcPrivateKey, TokenSession
from trustfleet.ota.repository import RepoKeys, RepoState, create_repository
from trustfleet.ota.signer import Pkcs11Signer, public_key_for
from trustfleet.services._ota_keys import (
    BOOT_KEY_LABEL,
    BOOT_KEY_PEM,
    RELEASE_TOKEN,
    SERVICE_TOKEN,
    KeyRef,
    ensure_token,
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


def create_ota_repository(settings: ServerSettings, uow: UnitOfWork, *, now: datetime) -> RepoState:
    """Create the OTA tokens and keys, the boot key, and root/targets/snapshot/timestamp v1.

    Tokens whose PIN file exists are reused (``tf-service``); the others are created.

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
    ota = settings.ota
    tokens = [root_token(i) for i in range(1, ota.root_keys + 1)] + [RELEASE_TOKEN, SERVICE_TOKEN]
    with contextlib.ExitStack() as stack:
        sessions: dict[str, TokenSession] = {}
        for label in dict.fromkeys(tokens):
            ensure_token(settings, label)
            sessions[label] = stack.enter_context(open_home_token(settings, label))
        roots = [
            sessions[root_token(i)].generate_ec_key("tuf-root", curve="P-256")
            for i in range(1, ota.root_keys + 1)
        ]
        online = {
            role: sessions[token].generate_ec_key(label, curve="P-256")
            for role, (token, label) in _INITIAL_LABELS.items()
        }
        boot = sessions[RELEASE_TOKEN].generate_ec_key(BOOT_KEY_LABEL, curve="P-256")
        state = _sign_initial(settings, roots=roots, online=online, now=now)
        key_map = {
            public_key_for(key).keyid: KeyRef(token=root_token(i), label=key.label)
            for i, key in enumerate(roots, start=1)
        }
        for role, key in online.items():
            key_map[public_key_for(key).keyid] = KeyRef(
                token=_INITIAL_LABELS[role][0], label=key.label
            )
        _write_boot_key(settings, boot)
    with files.locked(), uow.begin() as tx:
        tx.events.append(
            type="ota.repository.created",
            actor=current_operator(),
            subject="ota:repository",
            details={
                "root_version": state.root.signed.version,
                "root_threshold": ota.root_threshold,
                "root_keyids": list(state.root.signed.roles["root"].keyids),
            },
            now=now,
        )
        save_key_map(settings, key_map)
        write_state(settings, files, state, ["root", "targets", "snapshot", "timestamp"])
    logger.info("created the OTA repository in %s", files.root)
    return state


def _sign_initial(
    settings: ServerSettings,
    *,
    roots: list[Pkcs11EcPrivateKey],
    online: dict[str, Pkcs11EcPrivateKey],
    now: datetime,
) -> RepoState:
    keys = RepoKeys(
        root=tuple(public_key_for(key) for key in roots),
        root_threshold=settings.ota.root_threshold,
        targets=public_key_for(online["targets"]),
        snapshot=public_key_for(online["snapshot"]),
        timestamp=public_key_for(online["timestamp"]),
    )
    signers = {
        "root": [Pkcs11Signer(key) for key in roots],
        **{role: [Pkcs11Signer(key)] for role, key in online.items()},
    }
    return create_repository(keys=keys, signers=signers, expiry=expiry_of(settings.ota), now=now)


def _write_boot_key(settings: ServerSettings, boot: Pkcs11EcPrivateKey) -> None:
    pem = boot.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(settings.path(BOOT_KEY_PEM), pem)
