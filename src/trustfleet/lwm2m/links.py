"""CoRE link format (RFC 6690) as LwM2M uses it: registration payloads and Discover answers.

``</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5/0>,</3303/0>``. Parsing is bounded (links,
parameters per link, lengths) and strict about targets: an absolute path of letters, digits,
``-._`` and ``/``, no empty or dot segments; anything else raises :class:`LinkFormatError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trustfleet.errors import InvalidInput

__all__ = ["Link", "LinkFormatError", "format_links", "parse_links"]

MAX_TARGET_CHARS = 255
MAX_PARAMS = 16
MAX_PARAM_CHARS = 255
_TARGET = re.compile(r"/|(?:/[A-Za-z0-9_\-.]+)+")
_PARAM_NAME = re.compile(r"[a-z][a-z0-9!#$&+\-.^_`|~]*")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'()*+\-.:<=>?@\[\]^_`{|}~/]+")
_BARE = re.compile(r"[0-9.]+")


class LinkFormatError(InvalidInput):
    """A link-format payload is malformed or out of bounds."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Malformed link format: {reason}", code="lwm2m.links.malformed")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Link:
    """One link: its target path and its parameters (a parameter without value maps to "")."""

    path: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _split(text: str, sep: str) -> list[str]:
    # Split on ``sep`` outside quoted strings and angle brackets.
    parts: list[str] = []
    current: list[str] = []
    quoted = angled = False
    for char in text:
        if char == '"' and not angled:
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        if char == sep and not quoted and not angled:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted or angled:
        raise LinkFormatError("unterminated quote or target")
    parts.append("".join(current))
    return parts


def _target(text: str) -> str:
    if not (text.startswith("<") and text.endswith(">")):
        raise LinkFormatError("a link starts with <target>")
    path = text[1:-1]
    segments = path.split("/")[1:]
    if (
        len(path) > MAX_TARGET_CHARS
        or not _TARGET.fullmatch(path)
        or any(s in (".", "..") for s in segments)
    ):
        raise LinkFormatError("target is not a plain absolute path")
    return path


def _param(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not _PARAM_NAME.fullmatch(name) or len(text) > MAX_PARAM_CHARS:
        raise LinkFormatError("bad parameter name")
    if not eq:
        return name, ""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        if '"' in inner or "\\" in inner or not inner.isprintable():
            raise LinkFormatError("bad quoted parameter value")
        return name, inner
    if not _TOKEN.fullmatch(value):
        raise LinkFormatError("bad parameter value")
    return name, value


def parse_links(text: bytes, *, max_links: int) -> tuple[Link, ...]:
    """Parse a link-format payload.

    Args:
        text: The payload (UTF-8).
        max_links: The most links accepted.

    Raises:
        LinkFormatError: malformed, or more than ``max_links`` links.
    """
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LinkFormatError("not UTF-8") from exc
    if not decoded.strip():
        return ()
    if decoded.count(",") >= max_links:
        raise LinkFormatError(f"more than {max_links} links")
    links = []
    for item in _split(decoded.strip(), ","):
        parts = _split(item.strip(), ";")
        if len(parts) - 1 > MAX_PARAMS:
            raise LinkFormatError(f"more than {MAX_PARAMS} parameters")
        params = dict(_param(p) for p in parts[1:])
        if len(params) != len(parts) - 1:
            raise LinkFormatError("repeated parameter")
        links.append(Link(_target(parts[0]), MappingProxyType(params)))
    return tuple(links)


def format_links(links: Iterable[Link]) -> bytes:
    """Serialize links (numeric values bare, other values quoted, empty values as a bare name)."""
    out = []
    for link in links:
        _target(f"<{link.path}>")
        parts = [f"<{link.path}>"]
        for name, value in link.params.items():
            _param(name)
            if '"' in value or "\\" in value or not value.isprintable():
                raise ValueError("a link parameter value has no quote, backslash or control")
            if value == "":
                parts.append(name)
            elif _BARE.fullmatch(value):
                parts.append(f"{name}={value}")
            else:
                parts.append(f'{name}="{value}"')
        out.append(";".join(parts))
    return ",".join(out).encode("utf-8")
