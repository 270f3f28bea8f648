"""The TUF repository logic, checked with python-tuf's own client-side verifier.

Software keys (securesystemslib ``CryptoSigner``) stand in for token keys here: the logic is
pure and signer-agnostic; tests/integration/ota/ repeats the flows with SoftHSM2 keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import BadVersionNumberError, ExpiredMetadataError
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota.repository import (
    Expiry,
    RepoKeys,
    RepoState,
    add_targets,
    create_repository,
    describe,
    make_target,
    metadata_files,
    refresh_timestamp,
    rotate_online_keys,
    rotate_root,
    timestamp_due,
)

EXPIRY = Expiry(
    root=timedelta(days=365),
    targets=timedelta(days=90),
    snapshot=timedelta(days=7),
    timestamp=timedelta(hours=24),
)
SHA = "ab" * 32


def _signers(n: int) -> list[CryptoSigner]:
    return [CryptoSigner.generate_ecdsa() for _ in range(n)]


def _now() -> datetime:
    # python-tuf's verifier checks expiry against the real clock, so sign "now".
    return datetime.now(UTC)


class Repo:
    """A repository made of software keys: 2 of 3 root keys and one key per online role."""

    def __init__(self) -> None:
        self.root = _signers(3)
        self.targets, self.snapshot, self.timestamp = _signers(3)
        keys = RepoKeys(
            root=tuple(s.public_key for s in self.root),
            root_threshold=2,
            targets=self.targets.public_key,
            snapshot=self.snapshot.public_key,
            timestamp=self.timestamp.public_key,
        )
        self.state = create_repository(
            keys=keys, signers=self.signers(root=self.root[:2]), expiry=EXPIRY, now=_now()
        )

    def signers(self, *, root: Sequence[Signer] = ()) -> dict[str, list[Signer]]:
        return {
            "root": list(root),
            "targets": [self.targets],
            "snapshot": [self.snapshot],
            "timestamp": [self.timestamp],
        }


def _client_load(roots: Sequence[bytes], state: RepoState) -> TrustedMetadataSet:
    """What a device does: trust roots[0], walk the root chain, then timestamp → targets."""
    trusted = TrustedMetadataSet(roots[0], EnvelopeType.METADATA)
    for data in roots[1:]:
        trusted.update_root(data)
    files = metadata_files(state, ["root", "targets", "snapshot", "timestamp"])
    trusted.update_timestamp(files["timestamp.json"])
    trusted.update_snapshot(files[f"{state.snapshot.signed.version}.snapshot.json"])
    trusted.update_delegated_targets(
        files[f"{state.targets.signed.version}.targets.json"], "targets", "root"
    )
    return trusted


def _root_bytes(state: RepoState) -> bytes:
    return state.root.to_bytes()


def test_new_repository_verifies_with_ngclient() -> None:
    repo = Repo()
    trusted = _client_load([_root_bytes(repo.state)], repo.state)
    assert trusted.root.consistent_snapshot is True
    assert trusted.root.roles["root"].threshold == 2
    assert len(trusted.root.roles["root"].keyids) == 3
    assert trusted.targets.targets == {}
    assert describe(repo.state)["roles"]["timestamp"]["version"] == 1


def test_added_targets_are_signed_and_versions_bump() -> None:
    repo = Repo()
    target = make_target("m/1.0.0/image.bin", length=10, sha256=SHA, custom={"kind": "image"})
    state = add_targets(
        repo.state, targets=[target], signers=repo.signers(), expiry=EXPIRY, now=_now()
    )
    trusted = _client_load([_root_bytes(state)], state)
    got = trusted.targets.targets["m/1.0.0/image.bin"]
    assert got.hashes == {"sha256": SHA}
    assert got.custom == {"trustfleet": {"kind": "image"}}
    assert (state.targets.signed.version, state.snapshot.signed.version) == (2, 2)
    assert state.timestamp.signed.version == 2


def test_timestamp_refresh_keeps_snapshot_and_verifies() -> None:
    repo = Repo()
    now = _now()
    assert not timestamp_due(repo.state, now=now, margin=timedelta(hours=6))
    assert timestamp_due(repo.state, now=now + timedelta(hours=19), margin=timedelta(hours=6))
    state = refresh_timestamp(repo.state, signer=repo.timestamp, expiry=EXPIRY, now=now)
    assert state.timestamp.signed.version == 2
    assert state.timestamp.signed.snapshot_meta == repo.state.timestamp.signed.snapshot_meta
    _client_load([_root_bytes(state)], state)


def test_expired_timestamp_is_refused_by_the_client() -> None:
    repo = Repo()
    old = refresh_timestamp(
        repo.state, signer=repo.timestamp, expiry=EXPIRY, now=_now() - timedelta(days=2)
    )
    with pytest.raises(ExpiredMetadataError):
        _client_load([_root_bytes(old)], old)


def test_root_rotation_is_followed_by_a_client_holding_the_old_root() -> None:
    repo = Repo()
    v1 = _root_bytes(repo.state)
    new_root = _signers(3)
    state = rotate_root(
        repo.state,
        new_keys=[s.public_key for s in new_root],
        threshold=2,
        old_signers=repo.root[1:],
        new_signers=new_root,
        expiry=EXPIRY,
        now=_now(),
    )
    trusted = _client_load([v1, _root_bytes(state)], state)
    assert trusted.root.version == 2
    assert set(trusted.root.roles["root"].keyids) == {s.public_key.keyid for s in new_root}


@pytest.mark.parametrize(
    ("old", "new"),
    [(1, 3), (2, 1)],
    ids=["old-threshold-missing", "new-threshold-missing"],
)
def test_root_rotation_refuses_missing_signatures(old: int, new: int) -> None:
    repo = Repo()
    new_root = _signers(3)
    with pytest.raises(VerificationFailed) as info:
        rotate_root(
            repo.state,
            new_keys=[s.public_key for s in new_root],
            threshold=2,
            old_signers=repo.root[:old],
            new_signers=new_root[:new],
            expiry=EXPIRY,
            now=_now(),
        )
    assert info.value.code == "ota.sign.threshold"


def test_online_key_rotation_is_followed_and_old_keys_stop_working() -> None:
    repo = Repo()
    v1 = _root_bytes(repo.state)
    snapshot, timestamp = _signers(2)
    signers = {**repo.signers(root=repo.root[:2]), "snapshot": [snapshot], "timestamp": [timestamp]}
    state = rotate_online_keys(
        repo.state,
        snapshot_key=snapshot.public_key,
        timestamp_key=timestamp.public_key,
        signers=signers,
        expiry=EXPIRY,
        now=_now(),
    )
    trusted = _client_load([v1, _root_bytes(state)], state)
    assert trusted.root.roles["timestamp"].keyids == [timestamp.public_key.keyid]
    with pytest.raises(VerificationFailed):
        refresh_timestamp(state, signer=repo.timestamp, expiry=EXPIRY, now=_now())


def test_a_wrong_signer_fails_at_the_repository() -> None:
    repo = Repo()
    with pytest.raises(VerificationFailed):
        refresh_timestamp(repo.state, signer=repo.snapshot, expiry=EXPIRY, now=_now())


def test_rollback_of_the_timestamp_is_refused_by_the_client() -> None:
    repo = Repo()
    newer = refresh_timestamp(repo.state, signer=repo.timestamp, expiry=EXPIRY, now=_now())
    trusted = TrustedMetadataSet(_root_bytes(newer), EnvelopeType.METADATA)
    trusted.update_timestamp(newer.timestamp.to_bytes())
    with pytest.raises(BadVersionNumberError):
        trusted.update_timestamp(repo.state.timestamp.to_bytes())


def test_impossible_threshold_is_refused() -> None:
    repo = Repo()
    with pytest.raises(InvalidInput):
        rotate_root(
            repo.state,
            new_keys=[repo.root[0].public_key],
            threshold=2,
            old_signers=repo.root,
            new_signers=repo.root[:1],
            expiry=EXPIRY,
            now=_now(),
        )


def test_state_round_trips_through_bytes() -> None:
    repo = Repo()
    files = metadata_files(repo.state, ["root", "targets", "snapshot", "timestamp"])
    state = RepoState.from_bytes(
        root=files["1.root.json"],
        targets=files["1.targets.json"],
        snapshot=files["1.snapshot.json"],
        timestamp=files["timestamp.json"],
    )
    assert metadata_files(state, ["root", "targets", "snapshot", "timestamp"]) == files
    with pytest.raises(VerificationFailed):
        RepoState.from_bytes(
            root=files["1.targets.json"],
            targets=files["1.targets.json"],
            snapshot=files["1.snapshot.json"],
            timestamp=files["timestamp.json"],
        )
