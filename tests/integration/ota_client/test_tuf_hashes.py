"""TufClient over loopback HTTP with targets that list other hashes than SHA-256 (what
tuf-conformance's ``test_download_with_hash_algorithms`` checks): a SHA-512-only target is
fetched under its SHA-512-prefixed name and verified; tampered bytes, an algorithm the device
cannot compute, and a SHA-256 comparison against such a target are refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile, Targets
from tufrepo_kit import Behaviour, SimRepo, new_client, serving

from trustfleet.agent.updater._targets import matching_target
from trustfleet.errors import VerificationFailed

pytestmark = pytest.mark.integration

PATH = "sim-v1/4.0.0/image.bin"
DATA = bytes(range(241)) * 1500  # ~360 kB


def _add(repo: SimRepo, path: str, data: bytes, algorithms: list[str]) -> TargetFile:
    """List ``path`` with exactly ``algorithms`` and serve it under the first one's digest."""
    target = TargetFile.from_data(path, data, algorithms)
    repo.md[Targets.type].signed.targets[path] = target
    repo.target_data[path] = data
    dirname, sep, name = path.rpartition("/")
    repo.files[f"targets/{dirname}{sep}{next(iter(target.hashes.values()))}.{name}"] = data
    return target


def test_a_sha512_only_target_is_downloaded_under_its_sha512_name(tmp_path: Path) -> None:
    repo = SimRepo()
    _add(repo, PATH, DATA, ["sha512"])
    repo.publish()
    sha512 = hashlib.sha512(DATA).hexdigest()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes())
        target = client.target(PATH)
        assert target is not None
        assert target.sha256 == ""
        assert dict(target.hashes) == {"sha512": sha512}
        path = client.download(target)
        assert path.read_bytes() == DATA
        assert path.name == f"{sha512}.verified"
        fetched = [s.path for s in state.seen if s.path.startswith("targets/")]
        assert fetched == [f"targets/sim-v1/4.0.0/{sha512}.image.bin"]
        # The engine compares TUF targets with a manifest's SHA-256: without one it fails closed.
        with pytest.raises(VerificationFailed) as caught:
            matching_target(client, PATH, length=len(DATA), sha256=hashlib.sha256(DATA).hexdigest())
        assert caught.value.code == "ota.manifest.target_mismatch"


def test_sha256_and_sha512_both_checked(tmp_path: Path) -> None:
    repo = SimRepo()
    _add(repo, PATH, DATA, ["sha256", "sha512"])
    repo.publish()
    with serving(repo) as (url, state):
        served = next(k for k in repo.files if k.startswith("targets/"))
        tampered = DATA[:-1] + b"\x00"
        # Same length; the SHA-256-named URL serves other bytes: the SHA-512 also catches it.
        state.behaviour[served] = Behaviour(body=tampered)
        client = new_client(url, tmp_path, repo.root_bytes())
        target = client.target(PATH)
        assert target is not None and target.sha256 == hashlib.sha256(DATA).hexdigest()
        with pytest.raises(VerificationFailed) as caught:
            client.download(target)
        assert caught.value.code == "ota.tuf.hash"
        assert list((tmp_path / "downloads").iterdir()) == []
        del state.behaviour[served]
        assert client.download(target).read_bytes() == DATA


def test_a_tampered_sha512_only_target_is_refused(tmp_path: Path) -> None:
    repo = SimRepo()
    _add(repo, PATH, DATA, ["sha512"])
    repo.publish()
    with serving(repo) as (url, state):
        served = next(k for k in repo.files if k.startswith("targets/"))
        state.behaviour[served] = Behaviour(body=bytes(len(DATA)))
        client = new_client(url, tmp_path, repo.root_bytes())
        target = client.target(PATH)
        assert target is not None
        with pytest.raises(VerificationFailed) as caught:
            client.download(target)
        assert caught.value.code == "ota.tuf.hash"


@pytest.mark.parametrize(
    "hashes",
    [{"unknown-hash": "ab" * 32}, {"sha256": "ab" * 32, "unknown-hash": "ab" * 32}],
    ids=["unknown-only", "sha256-and-unknown"],
)
def test_an_algorithm_the_device_cannot_check_is_refused(
    tmp_path: Path, hashes: dict[str, str]
) -> None:
    repo = SimRepo()
    repo.md[Targets.type].signed.targets[PATH] = TargetFile(len(DATA), hashes, PATH)
    repo.publish()
    with serving(repo) as (url, state):
        client = new_client(url, tmp_path, repo.root_bytes())
        with pytest.raises(VerificationFailed) as caught:
            client.target(PATH)
        assert caught.value.code == "ota.tuf.hash"
        assert not [s for s in state.seen if s.path.startswith("targets/")]
