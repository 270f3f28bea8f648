"""A strict parser of RFC 5424 messages, for the tests' syslog receivers.

Built from the RFC's ABNF (§6): HEADER SP STRUCTURED-DATA [SP MSG]. It refuses what the ABNF
refuses (so a message it parses is well-formed), and unescapes PARAM-VALUEs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Syslog", "parse_octet_counted", "parse_rfc5424"]

_HEADER = re.compile(
    rb"<(?P<pri>[0-9]{1,3})>(?P<version>[1-9][0-9]{0,2}) "
    rb"(?P<timestamp>-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    rb"(?:Z|[+-][0-9]{2}:[0-9]{2})) "
    rb"(?P<hostname>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) "
)
_SD_NAME = rb"[!#-<>-\\^-~]{1,32}"  # PRINTUSASCII except '=', SP, ']', '"'
_SD_PARAM = re.compile(rb" (" + _SD_NAME + rb')="((?:[^"\\\]]|\\["\\\]])*)"')


@dataclass(frozen=True)
class Syslog:
    """One parsed message."""

    pri: int
    version: int
    timestamp: datetime | None
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]] = field(default_factory=dict)
    msg: str = ""
    bom: bool = False


def _unescape(value: bytes) -> str:
    return re.sub(rb'\\(["\\\]])', rb"\1", value).decode("utf-8")


def _structured(data: bytes) -> tuple[dict[str, dict[str, str]], bytes]:
    if data.startswith(b"-"):
        return {}, data[1:]
    elements: dict[str, dict[str, str]] = {}
    while data.startswith(b"["):
        match = re.match(rb"\[(" + _SD_NAME + rb")", data)
        assert match, data[:40]
        sd_id, pos = match.group(1).decode(), match.end()
        params: dict[str, str] = {}
        while (param := _SD_PARAM.match(data, pos)) is not None:
            params[param.group(1).decode()] = _unescape(param.group(2))
            pos = param.end()
        assert data[pos : pos + 1] == b"]", data[pos : pos + 40]
        elements[sd_id] = params
        data = data[pos + 1 :]
    assert elements, "STRUCTURED-DATA is NILVALUE or at least one SD-ELEMENT"
    return elements, data


def parse_rfc5424(message: bytes) -> Syslog:
    """Parse one message (no framing). Raises AssertionError when it breaks the ABNF."""
    header = _HEADER.match(message)
    assert header is not None, message[:120]
    pri = int(header["pri"])
    assert 0 <= pri <= 191, pri
    sd, rest = _structured(message[header.end() :])
    bom = False
    if rest:
        assert rest.startswith(b" "), rest[:20]
        rest = rest[1:]
        bom = rest.startswith(b"\xef\xbb\xbf")
        rest = rest[3:] if bom else rest
    stamp = header["timestamp"].decode()
    return Syslog(
        pri=pri,
        version=int(header["version"]),
        timestamp=None if stamp == "-" else datetime.fromisoformat(stamp.replace("Z", "+00:00")),
        hostname=header["hostname"].decode(),
        app_name=header["app"].decode(),
        procid=header["procid"].decode(),
        msgid=header["msgid"].decode(),
        sd=sd,
        msg=rest.decode("utf-8"),
        bom=bom,
    )


def parse_octet_counted(stream: bytes) -> list[bytes]:
    """Split an RFC 6587 §3.4.1 octet-counted TCP stream (``MSG-LEN SP SYSLOG-MSG``)."""
    frames: list[bytes] = []
    while stream:
        length, sep, rest = stream.partition(b" ")
        assert sep and length.isdigit() and not length.startswith(b"0"), stream[:20]
        size = int(length)
        assert len(rest) >= size, "truncated frame"
        frames.append(rest[:size])
        stream = rest[size:]
    return frames
