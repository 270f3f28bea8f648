"""The resumable download against an in-memory fetcher (the same ``RangeFetcher`` protocol the
real fetchers implement; they are tested over loopback in tests/integration/ota_client)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tuf.api import exceptions

from trustfleet.agent.updater._download import Expected, download_resumable
from trustfleet.agent.updater._http import RangedBody
from trustfleet.errors import Unavailable, VerificationFailed

DATA = bytes(range(256)) * 40


@dataclass
class MemoryFetcher:
    """Serves ``data``; misbehaves as told; records the offsets asked for."""

    data: bytes
    cut_after: list[int] = field(default_factory=list)  # one entry per request to cut
    ignore_range: bool = False
    extra: bytes = b""
    asked: list[int] = field(default_factory=list)

    def fetch_from(self, url: str, start: int) -> RangedBody:
        self.asked.append(start)
        offset = 0 if self.ignore_range else start
        body = self.data[offset:] + self.extra
        cut = self.cut_after.pop(0) if self.cut_after else None
        return RangedBody(self._chunks(body, cut), start=offset)

    @staticmethod
    def _chunks(body: bytes, cut: int | None) -> Iterator[bytes]:
        sent = 0
        while sent < len(body):
            if cut is not None and sent >= cut:
                raise exceptions.DownloadError("connection lost")
            yield body[sent : sent + 1000]
            sent += 1000


def _expected(data: bytes = DATA) -> Expected:
    return Expected("m/1.0.0/image.bin", len(data), hashlib.sha256(data).hexdigest(), {})


def _download(
    fetcher: MemoryFetcher, tmp_path: Path, *, attempts: int = 3, waits: list[float] | None = None
) -> Path:
    record = waits if waits is not None else []
    return download_resumable(
        fetcher, url="u", expected=_expected(), directory=tmp_path, attempts=attempts,
        sleep=record.append,
    )  # fmt: skip


def test_waits_grow_between_attempts_with_jitter(tmp_path: Path) -> None:
    # Regression (benchmarks/campaign.py at 200 devices): retries right after a cut made a
    # fleet that lost the server together fail together.
    waits: list[float] = []
    with pytest.raises(Unavailable):
        _download(MemoryFetcher(DATA, cut_after=[0] * 6), tmp_path, attempts=6, waits=waits)
    assert len(waits) == 5
    nominal = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(0.5 * n <= w <= 1.5 * n for w, n in zip(waits, nominal, strict=True)), waits


def test_resumes_where_each_cut_left_off(tmp_path: Path) -> None:
    fetcher = MemoryFetcher(DATA, cut_after=[3000, 2000])
    path = _download(fetcher, tmp_path)
    assert path.read_bytes() == DATA
    assert fetcher.asked == [0, 3000, 5000]
    assert path.name == f"{_expected().sha256}.verified"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_gives_up_after_the_attempts_and_keeps_the_partial(tmp_path: Path) -> None:
    fetcher = MemoryFetcher(DATA, cut_after=[1000, 1000])
    with pytest.raises(Unavailable) as caught:
        _download(fetcher, tmp_path, attempts=2)
    assert caught.value.code == "ota.tuf.unavailable"
    assert (tmp_path / f"{_expected().sha256}.part").read_bytes() == DATA[:2000]
    assert _download(MemoryFetcher(DATA), tmp_path).read_bytes() == DATA


def test_a_200_to_a_range_request_starts_over(tmp_path: Path) -> None:
    (tmp_path / f"{_expected().sha256}.part").write_bytes(b"\xff" * 4000)
    fetcher = MemoryFetcher(DATA, ignore_range=True)
    assert _download(fetcher, tmp_path).read_bytes() == DATA
    assert fetcher.asked == [4000]


@pytest.mark.parametrize("extra", [b"x", b"y" * 100_000], ids=["one-byte-more", "much-more"])
def test_never_writes_more_than_the_length(tmp_path: Path, extra: bytes) -> None:
    written: list[int] = []
    fetcher = MemoryFetcher(DATA, extra=extra)
    with pytest.raises(VerificationFailed) as caught:
        download_resumable(
            fetcher, url="u", expected=_expected(), directory=tmp_path, attempts=1,
            progress=lambda held, total: written.append(held),
        )  # fmt: skip
    assert caught.value.code == "ota.tuf.length"
    assert max(written) <= len(DATA)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_partial_is_deleted(tmp_path: Path) -> None:
    part = tmp_path / f"{_expected().sha256}.part"
    part.write_bytes(b"\x00" * 100)
    with pytest.raises(VerificationFailed) as caught:
        _download(MemoryFetcher(DATA), tmp_path)
    assert caught.value.code == "ota.tuf.hash"
    assert list(tmp_path.iterdir()) == []


def test_a_partial_longer_than_the_target_is_discarded(tmp_path: Path) -> None:
    (tmp_path / f"{_expected().sha256}.part").write_bytes(DATA + b"tail")
    fetcher = MemoryFetcher(DATA)
    assert _download(fetcher, tmp_path).read_bytes() == DATA
    assert fetcher.asked == [0]


def test_a_tampered_verified_file_is_downloaded_again(tmp_path: Path) -> None:
    _download(MemoryFetcher(DATA), tmp_path).write_bytes(b"tampered")
    fetcher = MemoryFetcher(DATA)
    assert _download(fetcher, tmp_path).read_bytes() == DATA
    assert fetcher.asked == [0]


def test_other_listed_hashes_are_checked_too(tmp_path: Path) -> None:
    expected = Expected("x", len(DATA), hashlib.sha256(DATA).hexdigest(), {"sha512": "00" * 64})
    with pytest.raises(VerificationFailed):
        download_resumable(
            MemoryFetcher(DATA), url="u", expected=expected, directory=tmp_path, attempts=1
        )


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(DATA)), max_size=4))
def test_any_pattern_of_cuts_ends_with_the_exact_bytes(tmp_path: Path, cuts: list[int]) -> None:
    directory = tmp_path / hashlib.sha256(repr(cuts).encode()).hexdigest()[:16]
    path = download_resumable(
        MemoryFetcher(DATA, cut_after=list(cuts)), url="u", expected=_expected(),
        directory=directory, attempts=len(cuts) + 1, sleep=lambda _s: None,
    )  # fmt: skip
    assert path.read_bytes() == DATA
