"""TUF attacks against the device's client: each is refused with its code, nothing changes.

A simulated repository (python-tuf Metadata API, test keys) is served on loopback HTTP; after
a good refresh at version 2 of every role, the attacker changes what is served. The client
must refuse with the row's ``ota.tuf.*`` code and no downloaded bytes may be left behind.

The trusted metadata on disk is compared byte for byte. The refused role and every role
after it are unchanged; a role that *verified* earlier in the same refresh is persisted, as
TUF requires (5.4.5 timestamp, 5.5.7 snapshot; tuf-conformance's ``test_targets_expired``
checks it): an attacker who must alter targets has to get a correctly signed snapshot and
timestamp past the client first. Each row names those roles (``advances``); most name none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import MetaFile, Root, Snapshot, Targets, Timestamp
from tufrepo_kit import Behaviour, RepoState, SimRepo, in_days, new_client, serving, trusted_state

from trustfleet.agent.updater.tufclient import TufBounds, TufClient
from trustfleet.errors import TrustFleetError, VerificationFailed

IMAGE = "sim-v1/1.0.0/image.bin"
IMAGE_DATA = bytes(range(256)) * 64
EVIL = "sim-v1/6.6.6/image.bin"


@dataclass
class Env:
    repo: SimRepo
    state: RepoState
    client: TufClient
    work: Path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    repo = SimRepo()
    repo.add_target(IMAGE, IMAGE_DATA, custom={"trustfleet": {"kind": "image"}})
    repo.publish()  # every role at version 2
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        client.refresh()
        yield Env(repo, state, client, tmp_path)


# --- the attacks: each changes what the repository serves -------------------------------
def unsigned_targets(e: Env) -> None:
    e.repo.add_target(EVIL, b"evil")
    e.repo.publish(targets_signers=[])


def targets_signed_by_wrong_key(e: Env) -> None:
    e.repo.add_target(EVIL, b"evil")
    e.repo.publish(targets_signers=[CryptoSigner.generate_ecdsa()])


def compromised_snapshot_timestamp_add_target(e: Env) -> None:
    # The attacker holds the online keys (snapshot, timestamp) but not the targets key: it
    # adds a target, keeps the old targets signature and re-signs snapshot and timestamp.
    e.repo.add_target(EVIL, b"evil")
    e.repo.publish(resign_targets=False)


def timestamp_rollback(e: Env) -> None:
    e.state.behaviour["metadata/timestamp.json"] = Behaviour(body=e.repo.timestamps[0])


def snapshot_rollback(e: Env) -> None:
    ts = e.repo.md[Timestamp.type].signed
    ts.version += 1
    ts.snapshot_meta = MetaFile(1)
    e.repo.store_timestamp()


def targets_rollback(e: Env) -> None:
    snapshot = e.repo.md[Snapshot.type].signed
    snapshot.version += 1
    snapshot.meta["targets.json"] = MetaFile(1)
    e.repo.files[f"metadata/{snapshot.version}.snapshot.json"] = e.repo.sign(Snapshot.type)
    ts = e.repo.md[Timestamp.type].signed
    ts.version += 1
    ts.snapshot_meta = MetaFile(snapshot.version)
    e.repo.store_timestamp()


def mix_and_match(e: Env) -> None:
    e.repo.publish()  # snapshot v3 lists targets v3 ...
    old = e.repo.files["metadata/2.targets.json"]  # ... the mirror serves targets v2 there
    e.state.behaviour["metadata/3.targets.json"] = Behaviour(body=old)


def older_root(e: Env) -> None:
    e.repo.rotate_root((Root.type,))
    e.state.behaviour["metadata/2.root.json"] = Behaviour(body=e.repo.root_bytes(1))


def root_signed_only_by_new_key(e: Env) -> None:
    e.repo.rotate_root((Root.type,))
    root_v2 = e.repo.sign(Root.type, signers=e.repo.signers[Root.type])
    e.state.behaviour["metadata/2.root.json"] = Behaviour(body=root_v2)


def expired_timestamp(e: Env) -> None:
    e.repo.publish(expires={Timestamp.type: in_days(-1)})


def expired_snapshot(e: Env) -> None:
    e.repo.publish(expires={Snapshot.type: in_days(-1)})


def endless_timestamp(e: Env) -> None:
    e.state.behaviour["metadata/timestamp.json"] = Behaviour(endless=True)


def endless_snapshot(e: Env) -> None:
    e.repo.publish()
    e.state.behaviour["metadata/3.snapshot.json"] = Behaviour(endless=True)


def endless_targets(e: Env) -> None:
    e.repo.publish()
    e.state.behaviour["metadata/3.targets.json"] = Behaviour(endless=True)


def target_wrong_hash(e: Env) -> None:
    bad = bytes(len(IMAGE_DATA))  # same length, other bytes
    e.state.behaviour[e.repo.target_url_path(IMAGE)] = Behaviour(body=bad)


def target_longer(e: Env) -> None:
    e.state.behaviour[e.repo.target_url_path(IMAGE)] = Behaviour(body=IMAGE_DATA + b"more")


def target_endless(e: Env) -> None:
    e.state.behaviour[e.repo.target_url_path(IMAGE)] = Behaviour(endless=True)


@dataclass(frozen=True)
class Case:
    attack: Callable[[Env], None]
    code: str
    step: str = "refresh"  # or "download"
    advances: tuple[str, ...] = ()  # trusted files that verified before the refusal


TS = ("timestamp.json",)
TS_SN = ("snapshot.json", "timestamp.json")


CASES = {
    "unsigned-targets": Case(unsigned_targets, "ota.tuf.signature", advances=TS_SN),
    "targets-wrong-key": Case(targets_signed_by_wrong_key, "ota.tuf.signature", advances=TS_SN),
    "online-keys-compromised-add-target": Case(
        compromised_snapshot_timestamp_add_target, "ota.tuf.signature", advances=TS_SN
    ),
    "timestamp-rollback": Case(timestamp_rollback, "ota.tuf.rollback"),
    "snapshot-rollback": Case(snapshot_rollback, "ota.tuf.rollback"),
    "targets-rollback": Case(targets_rollback, "ota.tuf.rollback", advances=TS),
    "mix-and-match": Case(mix_and_match, "ota.tuf.mismatch", advances=TS_SN),
    "older-root": Case(older_root, "ota.tuf.rollback"),
    "root-not-signed-by-old-keys": Case(root_signed_only_by_new_key, "ota.tuf.signature"),
    "expired-timestamp-freeze": Case(expired_timestamp, "ota.tuf.expired"),
    "expired-snapshot": Case(expired_snapshot, "ota.tuf.expired", advances=TS),
    "endless-timestamp": Case(endless_timestamp, "ota.tuf.length"),
    "endless-snapshot": Case(endless_snapshot, "ota.tuf.length", advances=TS),
    "endless-targets": Case(endless_targets, "ota.tuf.length", advances=TS_SN),
    "target-wrong-hash": Case(target_wrong_hash, "ota.tuf.hash", "download"),
    "target-longer-than-listed": Case(target_longer, "ota.tuf.length", "download"),
    "target-endless": Case(target_endless, "ota.tuf.length", "download"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_attack_is_refused_and_trusted_state_unchanged(env: Env, case: Case) -> None:
    before = trusted_state(env.work / "metadata")
    case.attack(env)
    with pytest.raises(VerificationFailed) as caught:
        if case.step == "refresh":
            env.client.refresh()
        else:
            target = env.client.target(IMAGE)
            assert target is not None
            env.client.download(target)
    assert caught.value.code == case.code, caught.value.one_line()
    after = trusted_state(env.work / "metadata")
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed == set(case.advances)
    for name in case.advances:  # what advanced is what the repository signed and served
        assert after[name] in env.repo.files.values()
    leftovers = list((env.work / "downloads").glob("*")) if case.step == "download" else []
    assert leftovers == []
    if case.step == "refresh":  # and the client offers nothing from the refused state
        with pytest.raises(TrustFleetError):
            env.client.target(IMAGE)


@pytest.mark.integration
def test_a_target_above_the_device_bound_is_refused_before_download(env: Env) -> None:
    small = TufClient(
        metadata_dir=env.work / "metadata",
        metadata_url=env.client._metadata_url,
        targets_url=env.client._targets_url,
        download_dir=env.work / "downloads",
        bounds=TufBounds(max_target_bytes=len(IMAGE_DATA) - 1),
    )
    small.refresh()
    with pytest.raises(VerificationFailed) as caught:
        small.target(IMAGE)
    assert caught.value.code == "ota.tuf.length"
    assert not any(
        env.state.seen[i].path.startswith("targets/") for i in range(len(env.state.seen))
    )


@pytest.mark.integration
def test_the_unattacked_repository_still_verifies(env: Env) -> None:
    """The baseline of the table: the same setup without an attack succeeds."""
    env.client.refresh()
    target = env.client.target(IMAGE)
    assert target is not None
    assert target.custom == {"trustfleet": {"kind": "image"}}
    assert env.client.download(target).read_bytes() == IMAGE_DATA
    assert [t.path for t in env.client.targets()] == [IMAGE]
    assert Targets.type and Snapshot.type  # the roles the table attacks exist
