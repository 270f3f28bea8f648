"""The HTTP rules both fetchers share: which answers are accepted and where a body starts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tuf.api import exceptions

from trustfleet.agent.updater._http import RangedBody, body_offset, content_length, range_header

ACCEPTED = {
    "200-whole": (200, {}, 0, 0),
    "200-ignoring-range": (200, {}, 500, 0),
    "206-matching": (206, {"content-range": "bytes 500-999/1000"}, 500, 500),
    "206-unknown-total": (206, {"content-range": "bytes 500-999/*"}, 500, 500),
}
REFUSED = {
    "206-other-start": (206, {"content-range": "bytes 400-999/1000"}, 500),
    "206-without-content-range": (206, {}, 500),
    "206-not-asked": (206, {"content-range": "bytes 0-9/10"}, 0),
    "206-garbage": (206, {"content-range": "items 500-999/1000"}, 500),
    "redirect": (302, {"location": "http://elsewhere/"}, 0),
    "not-found": (404, {}, 0),
    "unsatisfiable": (416, {"content-range": "bytes */1000"}, 1000),
    "server-error": (503, {}, 0),
    "no-content": (204, {}, 0),
}


@pytest.mark.parametrize(
    ("status", "headers", "start", "offset"), ACCEPTED.values(), ids=ACCEPTED.keys()
)
def test_accepted_answers(status: int, headers: dict[str, str], start: int, offset: int) -> None:
    assert body_offset(status, headers, start=start) == offset


@pytest.mark.parametrize(("status", "headers", "start"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_answers(status: int, headers: dict[str, str], start: int) -> None:
    with pytest.raises(exceptions.DownloadHTTPError) as caught:
        body_offset(status, headers, start=start)
    assert caught.value.status_code == status


def test_range_header() -> None:
    assert range_header(0) == {}
    assert range_header(42) == {"Range": "bytes=42-"}
    with pytest.raises(ValueError, match=">= 0"):
        range_header(-1)


@given(st.text(max_size=40))
def test_content_length_never_raises_and_is_bounded(value: str) -> None:
    parsed = content_length({"content-length": value})
    assert parsed is None or (parsed == int(value.strip()) and 0 <= parsed < 10**19)


def test_ranged_body_iterates_and_closes() -> None:
    closed: list[bool] = []

    def chunks():  # type: ignore[no-untyped-def]
        try:
            yield b"ab"
            yield b"cd"
        finally:
            closed.append(True)

    body = RangedBody(chunks(), start=7)
    assert body.start == 7
    assert next(body) == b"ab"
    body.close()
    assert closed == [True]
