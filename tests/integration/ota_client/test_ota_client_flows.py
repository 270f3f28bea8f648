"""What the device's TUF client must follow: root and online-key rotations, and resumable
downloads (Range after a cut, a server that ignores Range) over loopback HTTP."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp
from tufrepo_kit import Behaviour, SimRepo, new_client, serving, sha256_hex, trusted_state

from trustfleet.errors import Unavailable, VerificationFailed

pytestmark = pytest.mark.integration

IMAGE = "sim-v1/2.0.0/image.bin"
DATA = bytes(range(251)) * 4000  # ~1 MB, not a multiple of any chunk size


def _root_version(metadata: Path) -> int:
    return int(json.loads((metadata / "root.json").read_bytes())["signed"]["version"])


def test_root_rotations_1_2_3_with_key_changes_are_followed(tmp_path: Path) -> None:
    repo = SimRepo()
    with serving(repo) as (url, _):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        client.refresh()
        repo.rotate_root((Root.type, Targets.type))  # v2: new root and targets keys
        repo.rotate_root((Root.type,))  # v3: new root key again
        repo.add_target(IMAGE, DATA)
        repo.publish()  # signed with the v2 targets key
        client.refresh()
        assert _root_version(tmp_path / "metadata") == 3
        assert client.target(IMAGE) is not None
        # The v1 root key alone can no longer sign a root the client accepts.
        old_root = repo.signers[Root.type]
        repo.rotate_root(())
        repo.sign(Root.type, signers=old_root)  # v4 signed only by v3's key: accepted
        repo._store_root()
        client.refresh()
        assert _root_version(tmp_path / "metadata") == 4


def test_online_key_rotation_is_followed_and_old_keys_are_refused(tmp_path: Path) -> None:
    repo = SimRepo()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        client.refresh()
        old_timestamp_key = repo.signers[Timestamp.type]
        repo.rotate_root((Timestamp.type, Snapshot.type))
        repo.publish()
        client.refresh()  # snapshot and timestamp signed with the new online keys
        before = trusted_state(tmp_path / "metadata")
        repo.md[Timestamp.type].signed.version += 1
        state.behaviour["metadata/timestamp.json"] = Behaviour(
            body=repo.sign(Timestamp.type, signers=old_timestamp_key)
        )
        with pytest.raises(VerificationFailed) as caught:
            client.refresh()
        assert caught.value.code == "ota.tuf.signature"
        assert trusted_state(tmp_path / "metadata") == before


def _published() -> SimRepo:
    repo = SimRepo()
    repo.add_target(IMAGE, DATA, custom={"trustfleet": {"kind": "image", "version": "2.0.0"}})
    repo.publish()
    return repo


def test_download_resumes_with_range_after_a_cut(tmp_path: Path) -> None:
    repo = _published()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        client.refresh()
        target = client.target(IMAGE)
        assert target is not None and target.sha256 == sha256_hex(DATA)
        path = repo.target_url_path(IMAGE)
        state.behaviour[path] = Behaviour(cut_after=300_000, cut_times=1)
        seen: list[tuple[int, int]] = []
        verified = client.download(target, progress=lambda held, total: seen.append((held, total)))
        assert verified.read_bytes() == DATA
        assert verified.name == f"{target.sha256}.verified"
        requests = [s for s in state.seen if s.path == path]
        assert [(r.range is None, r.status) for r in requests] == [(True, 200), (False, 206)]
        # The second request resumes from what the first left on disk (the fetcher may drop
        # the last incomplete chunk before a cut, never more).
        resumed_at = int((requests[1].range or "").removeprefix("bytes=").removesuffix("-"))
        assert 300_000 - 64 * 1024 <= resumed_at <= 300_000
        assert seen[-1] == (len(DATA), len(DATA))
        assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
        assert not list(verified.parent.glob("*.part"))
        client.download(target)  # already verified: no new request
        assert len([s for s in state.seen if s.path == path]) == 2


def test_a_kept_partial_resumes_on_the_next_call(tmp_path: Path) -> None:
    repo = _published()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        target = client.target(IMAGE)
        assert target is not None
        path = repo.target_url_path(IMAGE)
        state.behaviour[path] = Behaviour(cut_after=200_000, cut_times=3)  # every attempt cut
        with pytest.raises(Unavailable) as caught:
            client.download(target)
        assert caught.value.code == "ota.tuf.unavailable"
        part = tmp_path / "downloads" / f"{target.sha256}.part"
        ranges = [s.range for s in state.seen if s.path == path]
        assert len(ranges) == 3 and ranges[0] is None
        starts = [int((r or "")[6:-1]) for r in ranges[1:]]
        assert 0 < starts[0] < starts[1]
        held = part.stat().st_size  # three cuts, each resumed where the last stopped
        assert held > starts[1] and part.read_bytes() == DATA[:held]
        assert client.download(target).read_bytes() == DATA  # the fourth call completes
        assert state.seen[-1].range == f"bytes={held}-"


def _with_partial(client: Any, tmp_path: Path, content: bytes) -> tuple[Any, Path]:
    """The image's target, and its partial download already holding ``content``."""
    target = client.target(IMAGE)
    assert target is not None
    part = tmp_path / "downloads" / f"{target.sha256}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(content)
    return target, part


def test_a_server_ignoring_range_makes_the_client_start_over(tmp_path: Path) -> None:
    repo = _published()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        # A partial the server's 200 must replace.
        target, _part = _with_partial(client, tmp_path, b"\xff" * 1000)
        state.behaviour[repo.target_url_path(IMAGE)] = Behaviour(ignore_range=True)
        assert client.download(target).read_bytes() == DATA
        assert (state.seen[-1].range, state.seen[-1].status) == ("bytes=1000-", 200)


def test_a_corrupt_partial_is_deleted_and_refused(tmp_path: Path) -> None:
    repo = _published()
    with serving(repo) as (url, _state):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        # Wrong first bytes; the rest resumes correctly.
        target, part = _with_partial(client, tmp_path, b"\x00" * 1000)
        with pytest.raises(VerificationFailed) as caught:
            client.download(target)
        assert caught.value.code == "ota.tuf.hash"
        assert not part.exists()
        assert client.download(target).read_bytes() == DATA  # a clean retry succeeds


def test_targets_keys_come_from_the_trusted_root_and_follow_its_rotations(tmp_path: Path) -> None:
    """What the builder policy verifies release provenance with (docs/supply-chain.md)."""
    repo = SimRepo()
    with serving(repo) as (url, _):
        client = new_client(url, tmp_path, repo.root_bytes(1))
        client.refresh()
        first = {s.public_key.keyid for s in repo.signers[Targets.type]}
        assert set(client.targets_keys()) == first
        repo.rotate_root((Targets.type,))
        repo.publish()
        client.refresh()
        rotated = {s.public_key.keyid for s in repo.signers[Targets.type]}
        assert set(client.targets_keys()) == rotated and not rotated & first
        keyid = next(iter(rotated))
        assert client.targets_keys()[keyid] == repo.root.keys[keyid]
