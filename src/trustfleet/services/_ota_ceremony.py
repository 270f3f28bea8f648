"""TUF root ceremonies: ``ota rotate-root`` and ``ota rotate-online`` with the offline tokens.

The TUF root keys are in the offline folder, one per token, each with its custodian's PIN
(docs/lifecycle.md). A ceremony needs the PINs of at least the current root's threshold of
tokens (TUF specification §5.3.4: a client accepts root N+1 only if a threshold of root N's
keys and a threshold of root N+1's own keys signed it).

Absent custodians: ``rotate-root`` rotates the keys of the custodians present only (a new key
in each of their tokens); an absent custodian's current key stays in the new root, and is
rotated at a later ceremony they attend. So the new root is signed by the present old keys
(≥ the old threshold) and the present new keys (≥ the new threshold).

Before anything is generated every given PIN is tried, so a wrong PIN changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securesystemslib.signer import Key, Signer  # type: ignore[attr-defined]

from trustfleet.audit.context import current_operator
from trustfleet.errors import Config
from trustfleet.keystore import open_token
from trustfleet.ota import RepoFiles
from trustfleet.ota.repository import RepoState, describe
from trustfleet.ota.repository import rotate_online_keys as _rotate_online_keys
from trustfleet.ota.repository import rotate_root as _rotate_root
from trustfleet.ota.signer import public_key_for
from trustfleet.services._offline import OfflineFolder, module_of
from trustfleet.services._ota_keys import (
    SERVICE_TOKEN,
    KeyRef,
    home_signer,
    load_key_map,
    offline_signer,
    open_home_token,
    repo_files,
    save_key_map,
)
from trustfleet.services._ota_state import expiry_of, load_state, write_state
from trustfleet.services.ceremony import CeremonyKeys, present_tokens, record_ceremony
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings

__all__ = ["rotate_online_keys", "rotate_root"]

logger = logging.getLogger(__name__)


def _root_refs(state: RepoState, keys: dict[str, KeyRef]) -> list[tuple[str, KeyRef]]:
    refs = []
    for keyid in state.root.signed.roles["root"].keyids:
        ref = keys.get(keyid)
        if ref is None:
            raise Config(
                f"no token key is recorded for TUF root key {keyid[:16]}",
                hint="restore HOME/ota/keys.json from a backup",
                code="ota.key.unknown",
            )
        refs.append((keyid, ref))
    return refs


@dataclass(frozen=True)
class _Custody:
    """The custodians at a root ceremony: the root's key references, the offline folder, and
    the tokens present (threshold checked, every PIN tried)."""

    settings: ServerSettings
    keys: CeremonyKeys
    state: RepoState
    refs: list[tuple[str, KeyRef]]
    folder: OfflineFolder
    present: list[str]

    @property
    def absent(self) -> list[str]:
        """The tokens of the root keys whose custodians are not here."""
        return [ref.token for _, ref in self.refs if ref.token not in self.present]

    def old_signers(self) -> list[Signer]:
        """Signers for the present custodians' current root keys."""
        return [
            offline_signer(
                self.settings, self.folder.conf, ref, pin=self.keys.pin(ref.token),
                key=self.state.root.signed.keys[keyid],
            )
            for keyid, ref in self.refs
            if ref.token in self.present
        ]  # fmt: skip


def _custodians(
    settings: ServerSettings, keys: CeremonyKeys, key_map: dict[str, KeyRef], state: RepoState
) -> _Custody:
    """The offline folder and the root tokens present (threshold checked, PINs tried)."""
    refs = _root_refs(state, key_map)
    folder = OfflineFolder.open(keys.offline)
    tokens = list(dict.fromkeys(ref.token for _, ref in refs))
    threshold = state.root.signed.roles["root"].threshold
    present = present_tokens(keys, tokens=tokens, threshold=threshold)
    module = module_of(settings)
    for token in present:  # a wrong PIN fails here, before anything is made
        open_token(module=module, label=token, pin=keys.pin(token), conf=folder.conf).close()
    return _Custody(settings, keys, state, refs, folder, present)


def _new_root_keys(c: _Custody, key_map: dict[str, KeyRef]) -> tuple[list[Key], list[Signer]]:
    """A new key in each present custodian's token (recorded in ``key_map``); an absent
    custodian's current key is kept. Returns the new root's keys and the new keys' signers."""
    label = f"tuf-root-r{c.state.root.signed.version + 1}"
    new_keys: list[Key] = []
    new_signers: list[Signer] = []
    module = module_of(c.settings)
    for keyid, ref in c.refs:
        if ref.token not in c.present:  # an absent custodian keeps the current key
            new_keys.append(c.state.root.signed.keys[keyid])
            continue
        pin = c.keys.pin(ref.token)
        with open_token(module=module, label=ref.token, pin=pin, conf=c.folder.conf) as token:
            public = public_key_for(token.generate_ec_key(label, curve="P-256"))
        new_ref = KeyRef(token=ref.token, label=label)
        key_map[public.keyid] = new_ref
        new_keys.append(public)
        new_signers.append(offline_signer(c.settings, c.folder.conf, new_ref, pin=pin, key=public))
    return new_keys, new_signers


def rotate_root(rt: Runtime, keys: CeremonyKeys, *, now: datetime) -> dict[str, Any]:
    """Root key ceremony: a new key in the token of each custodian present, root N+1.

    Writes ``ota.root.rotated`` and ``ceremony.rotate_root`` in one transaction.

    Returns:
        The repository's status after the rotation.

    Raises:
        InvalidInput: Fewer PINs than the root threshold (code ``ceremony.threshold``).
        PermissionDenied: A PIN is wrong (code ``keystore.login``).
        Unavailable: No offline folder (code ``ceremony.offline.missing``).
        VerificationFailed: The old or the new threshold is not met.
    """
    settings, files = rt.settings, repo_files(rt.settings)
    rt.release_keys()  # the offline configuration becomes active in this process
    with files.locked():
        state = load_state(files)
        key_map = load_key_map(settings)
        custody = _custodians(settings, keys, key_map, state)
        old = custody.old_signers()
        new_keys, new_signers = _new_root_keys(custody, key_map)
        rotated = _rotate_root(
            state, new_keys=new_keys, threshold=settings.ota.root_threshold, old_signers=old,
            new_signers=new_signers, expiry=expiry_of(settings.ota), now=now,
        )  # fmt: skip
        _commit_rotation(
            rt, files, rotated, key_map, event="ota.root.rotated", previous=state, now=now,
            ceremony=("rotate_root", custody.present,
                      {"rotated": custody.present, "kept": custody.absent}),
        )  # fmt: skip
    return {"repo_dir": str(files.root), **describe(rotated)}


def rotate_online_keys(rt: Runtime, keys: CeremonyKeys, *, now: datetime) -> dict[str, Any]:
    """Replace the snapshot and timestamp keys (in ``tf-service``) through root N+1, signed
    by the root keys of the custodians present (at least the threshold).

    Writes ``ota.online_keys.rotated`` and ``ceremony.rotate_online`` in one transaction.

    Returns:
        The repository's status after the rotation.

    Raises:
        As :func:`rotate_root`.
    """
    settings, files = rt.settings, repo_files(rt.settings)
    rt.release_keys()
    with files.locked():
        state = load_state(files)
        key_map = load_key_map(settings)
        custody = _custodians(settings, keys, key_map, state)
        root_signers = custody.old_signers()
        version = state.root.signed.version + 1
        online: dict[str, Signer] = {}
        with open_home_token(settings, SERVICE_TOKEN) as session:
            for role in ("snapshot", "timestamp"):
                ref = KeyRef(token=SERVICE_TOKEN, label=f"tuf-{role}-r{version}")
                public = public_key_for(session.generate_ec_key(ref.label, curve="P-256"))
                key_map[public.keyid] = ref
                online[role] = home_signer(settings, ref, key=public)
        rotated = _rotate_online_keys(
            state,
            snapshot_key=online["snapshot"].public_key,
            timestamp_key=online["timestamp"].public_key,
            signers={"root": root_signers, "snapshot": [online["snapshot"]],
                     "timestamp": [online["timestamp"]]},
            expiry=expiry_of(settings.ota),
            now=now,
        )  # fmt: skip
        _commit_rotation(
            rt, files, rotated, key_map, event="ota.online_keys.rotated", previous=state,
            now=now, ceremony=("rotate_online", custody.present, {}),
        )  # fmt: skip
    return {"repo_dir": str(files.root), **describe(rotated)}


def _commit_rotation(
    rt: Runtime,
    files: RepoFiles,
    state: RepoState,
    keys: dict[str, KeyRef],
    *,
    event: str,
    previous: RepoState,
    now: datetime,
    ceremony: tuple[str, list[str], dict[str, Any]],
) -> None:
    roles = ["root"]
    if state.timestamp.signed.version != previous.timestamp.signed.version:
        roles += ["snapshot", "timestamp"]
    root = state.root.signed
    details: dict[str, Any] = {
        "root_version": root.version,
        "root_keyids": list(root.roles["root"].keyids),
        "snapshot_keyids": list(root.roles["snapshot"].keyids),
        "timestamp_keyids": list(root.roles["timestamp"].keyids),
    }
    kind, custodians, extra = ceremony
    with rt.uow.begin() as tx:
        tx.events.append(
            type=event, actor=current_operator(), subject="ota:repository", details=details,
            now=now,
        )  # fmt: skip
        record_ceremony(tx, kind=kind, custodians=custodians, details={**details, **extra}, now=now)
        save_key_map(rt.settings, keys)
        write_state(rt.settings, files, state, roles)
    logger.info("%s: root version %d", event, root.version)
