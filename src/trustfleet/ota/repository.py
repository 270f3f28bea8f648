"""The TUF repository's metadata logic, pure: metadata and signers in, new metadata out.

What we implement of the TUF specification (docs/ota.md, "Repository"): the four top-level
roles, consistent snapshots (versioned metadata, hashed target names), a threshold of root
keys, root rotation (each new root is signed by a threshold of the previous root's keys and by
its own new keys) and online key rotation (snapshot/timestamp keys replaced through a new root).
No delegations and no hashed bins yet. Each operation checks its result against the root it
produces (``verify_delegate``), so a signer holding the wrong key fails here, not on a device.

File I/O lives in :mod:`trustfleet.ota._repofiles`; tokens in the service layer.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from securesystemslib.signer import Key, Signer  # type: ignore[attr-defined]  # re-exported
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, no __all__ there
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "ONLINE_ROLES",
    "Expiry",
    "RepoKeys",
    "RepoState",
    "TargetFile",
    "add_targets",
    "create_repository",
    "describe",
    "make_target",
    "metadata_files",
    "read_state",
    "refresh_timestamp",
    "rotate_online_keys",
    "rotate_root",
    "timestamp_due",
]

ONLINE_ROLES = ("snapshot", "timestamp")
_S = TypeVar("_S", Root, Targets, Snapshot, Timestamp)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry:
    """How long each role's metadata is valid after it is signed."""

    root: timedelta
    targets: timedelta
    snapshot: timedelta
    timestamp: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class RepoKeys:
    """The public keys of a new repository: several root keys, one key per other role."""

    root: tuple[Key, ...]
    root_threshold: int
    targets: Key
    snapshot: Key
    timestamp: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class RepoState:
    """The current top-level metadata of a repository (all signed)."""

    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]

    @classmethod
    def from_bytes(
        cls, *, root: bytes, targets: bytes, snapshot: bytes, timestamp: bytes
    ) -> RepoState:
        """Parse metadata read from a repository.

        Raises:
            VerificationFailed: A file is not valid metadata of its role
                (code ``ota.repo.corrupt``).
        """
        try:
            return cls(
                root=_parse(root, Root),
                targets=_parse(targets, Targets),
                snapshot=_parse(snapshot, Snapshot),
                timestamp=_parse(timestamp, Timestamp),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise _corrupt(exc) from exc


def read_state(*, root: bytes, read: Callable[[str], bytes]) -> RepoState:
    """The current metadata: ``root``, ``timestamp.json``, and the snapshot and targets named.

    Args:
        root: The newest root's bytes.
        read: Returns the bytes of a metadata file by name (``timestamp.json``,
            ``V.snapshot.json``, ``V.targets.json``).

    Raises:
        VerificationFailed: A file is not valid metadata (code ``ota.repo.corrupt``).
    """
    timestamp = read("timestamp.json")
    try:
        snapshot_name = f"{_parse(timestamp, Timestamp).signed.snapshot_meta.version}.snapshot.json"
        snapshot = read(snapshot_name)
        targets_meta = _parse(snapshot, Snapshot).signed.meta["targets.json"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(exc) from exc
    targets = read(f"{targets_meta.version}.targets.json")
    return RepoState.from_bytes(root=root, targets=targets, snapshot=snapshot, timestamp=timestamp)


def _corrupt(exc: Exception) -> VerificationFailed:
    return VerificationFailed(
        f"the repository's metadata is not valid: {exc}",
        hint="restore the repository from a backup",
        code="ota.repo.corrupt",
    )


def _parse(data: bytes, kind: type[_S]) -> Metadata[_S]:
    md: Metadata[Any] = Metadata.from_bytes(data)
    if not isinstance(md.signed, kind):
        raise ValueError(f"expected {kind.type} metadata, got {md.signed.type}")
    return md


def make_target(
    path: str, *, length: int, sha256: str, custom: Mapping[str, Any] | None = None
) -> TargetFile:
    """A target description (``custom`` goes under ``custom.trustfleet``)."""
    fields = {"custom": {"trustfleet": dict(custom)}} if custom else None
    return TargetFile(length, {"sha256": sha256}, path, fields)


def _metafile(md: Metadata[Any]) -> MetaFile:
    data = md.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return MetaFile(version=md.signed.version, length=len(data), hashes={"sha256": digest})


def _sign(
    md: Metadata[_S], signers: Sequence[Signer], *, root: Root, previous: Root | None = None
) -> Metadata[_S]:
    md.signatures.clear()
    try:
        for signer in signers:
            md.sign(signer, append=True)
        role = md.signed.type
        if role == Root.type:
            result = root.get_root_verification_result(previous, md.signed_bytes, md.signatures)
            if not result.verified:
                raise UnsignedMetadataError("root threshold not met (old or new root)")
        else:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise VerificationFailed(
            f"the {md.signed.type} metadata does not verify with the given signers: {exc}",
            hint="check that each token holds the key the root names",
            code="ota.sign.threshold",
        ) from exc
    return md


def _new_root(keys: RepoKeys, *, expires: datetime) -> Root:
    if not 1 <= keys.root_threshold <= len(keys.root):
        raise InvalidInput(
            f"root threshold {keys.root_threshold} is not within 1..{len(keys.root)}",
            code="ota.root.threshold",
        )
    root = Root(expires=expires, consistent_snapshot=True)
    for key in keys.root:
        root.add_key(key, Root.type)
    root.roles[Root.type].threshold = keys.root_threshold
    root.add_key(keys.targets, Targets.type)
    root.add_key(keys.snapshot, Snapshot.type)
    root.add_key(keys.timestamp, Timestamp.type)
    return root


def create_repository(
    *, keys: RepoKeys, signers: Mapping[str, Sequence[Signer]], expiry: Expiry, now: datetime
) -> RepoState:
    """A new repository: root v1, empty targets v1, snapshot v1, timestamp v1.

    Args:
        keys: The public keys of each role.
        signers: Signers per role name (root: at least its threshold).
        expiry: Validity of each role.
        now: The signing time.

    Raises:
        VerificationFailed: A role's signatures do not meet its threshold.
    """
    root = _new_root(keys, expires=now + expiry.root)
    root_md = _sign(Metadata(root), signers[Root.type], root=root)
    targets_md = _sign(
        Metadata(Targets(expires=now + expiry.targets)), signers[Targets.type], root=root
    )
    state = RepoState(
        root=root_md,
        targets=targets_md,
        snapshot=Metadata(Snapshot()),
        timestamp=Metadata(Timestamp()),
    )
    return _publish_snapshot(state, signers=signers, expiry=expiry, now=now, bump=False)


def _publish_snapshot(
    state: RepoState,
    *,
    signers: Mapping[str, Sequence[Signer]],
    expiry: Expiry,
    now: datetime,
    bump: bool = True,
) -> RepoState:
    root = state.root.signed
    snapshot = Snapshot(
        version=state.snapshot.signed.version + (1 if bump else 0),
        expires=now + expiry.snapshot,
        meta={"targets.json": _metafile(state.targets)},
    )
    snapshot_md = _sign(Metadata(snapshot), signers[Snapshot.type], root=root)
    timestamp = Timestamp(
        version=state.timestamp.signed.version + (1 if bump else 0),
        expires=now + expiry.timestamp,
        snapshot_meta=_metafile(snapshot_md),
    )
    timestamp_md = _sign(Metadata(timestamp), signers[Timestamp.type], root=root)
    return replace(state, snapshot=snapshot_md, timestamp=timestamp_md)


def add_targets(
    state: RepoState,
    *,
    targets: Sequence[TargetFile],
    signers: Mapping[str, Sequence[Signer]],
    expiry: Expiry,
    now: datetime,
) -> RepoState:
    """Add (or replace) targets: new targets, snapshot and timestamp versions.

    Args:
        state: The current metadata.
        targets: The targets to add.
        signers: Signers for ``targets``, ``snapshot`` and ``timestamp``.
        expiry: Validity of each role.
        now: The signing time.
    """
    old = state.targets.signed
    new = Targets(
        version=old.version + 1,
        expires=now + expiry.targets,
        targets={**old.targets, **{t.path: t for t in targets}},
    )
    targets_md = _sign(Metadata(new), signers[Targets.type], root=state.root.signed)
    return _publish_snapshot(
        replace(state, targets=targets_md), signers=signers, expiry=expiry, now=now
    )


def timestamp_due(state: RepoState, *, now: datetime, margin: timedelta) -> bool:
    """Whether the timestamp expires within ``margin`` of ``now``."""
    return state.timestamp.signed.expires <= now + margin


def refresh_timestamp(
    state: RepoState, *, signer: Signer, expiry: Expiry, now: datetime
) -> RepoState:
    """A new timestamp version for the same snapshot, valid from ``now``."""
    old = state.timestamp.signed
    timestamp = Timestamp(
        version=old.version + 1, expires=now + expiry.timestamp, snapshot_meta=old.snapshot_meta
    )
    return replace(state, timestamp=_sign(Metadata(timestamp), [signer], root=state.root.signed))


def _next_root(state: RepoState, *, expiry: Expiry, now: datetime) -> Root:
    old = state.root.signed
    root = copy.deepcopy(old)  # Root.from_dict(to_dict()) would share the keyid lists
    root.version = old.version + 1
    root.expires = now + expiry.root
    return root


def rotate_root(
    state: RepoState,
    *,
    new_keys: Sequence[Key],
    threshold: int,
    old_signers: Sequence[Signer],
    new_signers: Sequence[Signer],
    expiry: Expiry,
    now: datetime,
) -> RepoState:
    """A new root version whose root keys are ``new_keys``.

    It is signed by ``old_signers`` (at least the previous root's threshold) and by
    ``new_signers`` (at least the new threshold), so a device trusting the previous root
    accepts it.

    Raises:
        InvalidInput: The threshold is impossible.
        VerificationFailed: Either threshold is not met.
    """
    if not 1 <= threshold <= len(new_keys):
        raise InvalidInput(
            f"root threshold {threshold} is not within 1..{len(new_keys)}",
            code="ota.root.threshold",
        )
    root = _next_root(state, expiry=expiry, now=now)
    for keyid in list(root.roles[Root.type].keyids):
        root.revoke_key(keyid, Root.type)
    for key in new_keys:
        root.add_key(key, Root.type)
    root.roles[Root.type].threshold = threshold
    signers = [*old_signers, *new_signers]
    root_md = _sign(Metadata(root), signers, root=root, previous=state.root.signed)
    return replace(state, root=root_md)


def rotate_online_keys(
    state: RepoState,
    *,
    snapshot_key: Key,
    timestamp_key: Key,
    signers: Mapping[str, Sequence[Signer]],
    expiry: Expiry,
    now: datetime,
) -> RepoState:
    """Replace the snapshot and timestamp keys: a new root, snapshot and timestamp.

    Args:
        state: The current metadata.
        snapshot_key: The new snapshot key.
        timestamp_key: The new timestamp key.
        signers: ``root`` (the root threshold) and the NEW ``snapshot``/``timestamp`` signers.
        expiry: Validity of each role.
        now: The signing time.
    """
    root = _next_root(state, expiry=expiry, now=now)
    for role, key in ((Snapshot.type, snapshot_key), (Timestamp.type, timestamp_key)):
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(key, role)
        root.roles[role] = Role(root.roles[role].keyids, 1)
    root_md = _sign(Metadata(root), signers[Root.type], root=root, previous=state.root.signed)
    rotated = replace(state, root=root_md)
    return _publish_snapshot(rotated, signers=signers, expiry=expiry, now=now)


def metadata_files(state: RepoState, roles: Sequence[str]) -> dict[str, bytes]:
    """File name → bytes of the given roles' current metadata (consistent-snapshot names)."""
    files: dict[str, bytes] = {}
    for role in roles:
        md: Metadata[Any] = getattr(state, role)
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        files[name] = md.to_bytes()
    return files


def describe(state: RepoState) -> dict[str, Any]:
    """Roles, versions, expiries, key ids and thresholds, as JSON-ready data."""
    root = state.root.signed
    roles: dict[str, Any] = {}
    for name in ("root", "targets", "snapshot", "timestamp"):
        md: Metadata[Any] = getattr(state, name)
        role = root.roles[name]
        roles[name] = {
            "version": md.signed.version,
            "expires": md.signed.expires.isoformat().replace("+00:00", "Z"),
            "threshold": role.threshold,
            "keyids": list(role.keyids),
        }
    return {
        "consistent_snapshot": bool(root.consistent_snapshot),
        "roles": roles,
        "targets": len(state.targets.signed.targets),
    }
