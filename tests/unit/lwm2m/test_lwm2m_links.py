"""CoRE link format (RFC 6690) as LwM2M registration uses it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.lwm2m.links import Link, LinkFormatError, format_links, parse_links

_REGISTER = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5/0>,</3303/0>'


def test_lwm2m_registration_payload() -> None:
    links = parse_links(_REGISTER, max_links=16)
    assert [link.path for link in links] == ["/", "/1/0", "/3/0", "/5/0", "/3303/0"]
    assert dict(links[0].params) == {"rt": "oma.lwm2m", "ct": "110"}
    assert format_links(links) == _REGISTER


def test_wakaama_style_with_versions_and_bare_params() -> None:
    text = b'</lwm2m>;rt="oma.lwm2m", </lwm2m/1>;ver=1.1,</lwm2m/3/0>;obs,</lwm2m/31024/10>'
    links = parse_links(text, max_links=8)
    assert links[1] == Link("/lwm2m/1", {"ver": "1.1"})
    assert dict(links[2].params) == {"obs": ""}
    assert parse_links(format_links(links), max_links=8) == links
    assert parse_links(b"  ", max_links=1) == ()


@pytest.mark.parametrize(
    "text",
    [
        b"</1/0",
        b"/1/0",
        b"<1/0>",
        b"</1/../0>",
        b"</1//0>",
        b"</1/0/>",
        b"</1/0?x>",
        b"</1/%2e%2e>",
        b"</1 0>",
        b'</>;rt="oma',
        b'</>;rt="a"b"',
        b"</>;Rt=1",
        b"</>;rt=1;rt=2",
        b"</>;x=a b",
        b"</" + b"a" * 300 + b">",
        b"</>;" + b";".join(b"p%d" % i for i in range(20)),
        b",".join([b"</1/0>"] * 20),
        b"\xff",
    ],
    ids=[
        "unterminated-target",
        "no-brackets",
        "relative",
        "dot-dot",
        "empty-segment",
        "trailing-slash",
        "query",
        "percent",
        "space",
        "unterminated-quote",
        "quote-in-value",
        "upper-case-name",
        "repeated-param",
        "space-in-token",
        "long-target",
        "too-many-params",
        "too-many-links",
        "not-utf8",
    ],
)
def test_hostile_links_refused(text: bytes) -> None:
    with pytest.raises(LinkFormatError):
        parse_links(text, max_links=16)


def test_format_refuses_bad_values() -> None:
    with pytest.raises(ValueError):
        format_links([Link("/1", {"rt": 'a"b'})])
    with pytest.raises(LinkFormatError):
        format_links([Link("/../x")])


@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(LinkFormatError):
        parse_links(data, max_links=8)
