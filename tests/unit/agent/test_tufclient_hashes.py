"""Targets listed with hashes other than SHA-256 (the TUF specification allows any algorithm):
the download is named by the strongest listed hash and every listed hash is checked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trustfleet.agent.updater._download import Expected, download_resumable, naming_hash
from trustfleet.agent.updater._http import RangedBody
from trustfleet.errors import VerificationFailed

DATA = bytes(range(256)) * 33
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()
BLAKE = hashlib.blake2b(DATA, digest_size=32).hexdigest()


@dataclass
class Fetcher:
    """Serves ``data`` in 1000-byte chunks, honouring the start offset."""

    data: bytes
    asked: list[int] = field(default_factory=list)

    def fetch_from(self, url: str, start: int) -> RangedBody:
        self.asked.append(start)
        return RangedBody(self._chunks(self.data[start:]), start=start)

    @staticmethod
    def _chunks(body: bytes) -> Iterator[bytes]:
        for at in range(0, len(body), 1000):
            yield body[at : at + 1000]


def _download(expected: Expected, directory: Path, data: bytes = DATA) -> Path:
    return download_resumable(
        Fetcher(data), url="u", expected=expected, directory=directory, attempts=1
    )


@pytest.mark.parametrize(
    ("hashes", "named_by"),
    [
        ({"sha512": SHA512}, SHA512),
        ({"sha256": SHA256, "sha512": SHA512}, SHA256),
        ({"sha512": SHA512, "sha256": SHA256}, SHA256),
        ({"blake2b-256": BLAKE}, BLAKE),
        ({"sha1": hashlib.sha1(DATA).hexdigest(), "sha512": SHA512}, SHA512),  # noqa: S324
    ],
    ids=["sha512-only", "sha256-and-sha512", "sha256-listed-second", "blake2b-256", "sha1+sha512"],
)
def test_named_by_the_strongest_listed_hash(
    tmp_path: Path, hashes: dict[str, str], named_by: str
) -> None:
    others = {k: v for k, v in hashes.items() if k != "sha256"}
    expected = Expected("m/1.0.0/image.bin", len(DATA), hashes.get("sha256", ""), others)
    path = _download(expected, tmp_path)
    assert path.name == f"{named_by}.verified"
    assert path.read_bytes() == DATA


@pytest.mark.parametrize(
    "others",
    [
        {"sha512": "00" * 64},
        {"sha512": SHA512, "sha384": "00" * 48},
        {"sha512": SHA512, "no-such-algorithm": SHA512},
    ],
    ids=["wrong-sha512", "one-wrong-of-two", "unknown-algorithm-listed"],
)
def test_every_listed_hash_must_match(tmp_path: Path, others: dict[str, str]) -> None:
    with pytest.raises(VerificationFailed) as caught:
        _download(Expected("x", len(DATA), "", others), tmp_path)
    assert caught.value.code == "ota.tuf.hash"
    assert list(tmp_path.iterdir()) == []  # the partial was deleted


def test_a_sha512_only_partial_is_resumed(tmp_path: Path) -> None:
    (tmp_path / f"{SHA512}.part").write_bytes(DATA[:5000])
    fetcher = Fetcher(DATA)
    path = download_resumable(
        fetcher, url="u", expected=Expected("x", len(DATA), "", {"sha512": SHA512}),
        directory=tmp_path, attempts=1,
    )  # fmt: skip
    assert fetcher.asked == [5000]
    assert path.read_bytes() == DATA


@pytest.mark.parametrize(
    "hashes",
    [
        {},
        {"md5": hashlib.md5(DATA).hexdigest()},  # noqa: S324
        {"sha512": "../../etc/passwd"},
        {"sha512": SHA512.upper()},
        {"sha256": "abc"},
    ],
    ids=["none", "weak-only", "path-in-hash", "upper-case-hex", "too-short"],
)
def test_no_hash_that_may_name_a_file_is_refused_before_any_request(
    tmp_path: Path, hashes: dict[str, str]
) -> None:
    assert naming_hash(hashes) is None
    fetcher = Fetcher(DATA)
    others = {k: v for k, v in hashes.items() if k != "sha256"}
    with pytest.raises(VerificationFailed) as caught:
        download_resumable(
            fetcher, url="u", expected=Expected("x", len(DATA), hashes.get("sha256", ""), others),
            directory=tmp_path, attempts=1,
        )  # fmt: skip
    assert caught.value.code == "ota.tuf.hash"
    assert fetcher.asked == []
