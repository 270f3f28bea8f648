"""One strict, bounded JSON reader for the release attestations (DSSE, in-toto, SBOM).

Refuses what lets two readers disagree about the same bytes: duplicate object keys, ``NaN`` and
``Infinity``, invalid UTF-8, a leading byte-order mark, and nesting deep enough to exhaust the
stack. Integers are bounded by Python's digit limit (a ``ValueError`` we translate here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn

__all__ = ["dumps", "fields", "load"]

_MAX_DEPTH = 100
"""Deepest nesting of arrays and objects read (our documents nest a few levels)."""


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class _Refused(ValueError):
    """A construct the strict reader refuses (duplicate key, non-finite number)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _Refused(f"the key '{key[:40]}' appears twice")
        doc[key] = value
    return doc


def _constant(name: str) -> NoReturn:
    raise _Refused(f"'{name}' is not JSON")


def _depth_ok(text: str) -> bool:
    """Whether brackets nest at most :data:`_MAX_DEPTH` deep, outside strings.

    Exact for valid JSON (which is all ``json.loads`` then accepts); regular expressions keep it
    at C speed on megabyte SBOMs.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0)) <= _MAX_DEPTH


def load(data: bytes, *, max_bytes: int, bad: Callable[[str], Exception]) -> Any:
    """Parse bounded, strict UTF-8 JSON.

    Args:
        data: The bytes read from outside.
        max_bytes: The largest input accepted.
        bad: Builds the caller's error from a reason (it is raised, ``from`` the cause).

    Returns:
        The parsed value (dicts, lists, str, int, float, bool, None).

    Raises:
        Exception: What ``bad`` builds, for oversize, non-UTF-8, invalid or refused JSON.
    """
    if len(data) > max_bytes:
        raise bad(f"larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("not UTF-8") from exc
    if not _depth_ok(text):
        raise bad(f"nested deeper than {_MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Refused as exc:
        raise bad(str(exc)) from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit
        raise bad("not valid JSON") from exc


def fields(
    doc: Any,
    name: str,
    keys: frozenset[str] | set[str],
    optional: frozenset[str] | set[str] = frozenset(),
    *,
    bad: Callable[[str], Exception],
) -> dict[str, Any]:
    """``doc`` as an object with all of ``keys``, and besides them only ``optional`` ones.

    Args:
        doc: A parsed JSON value.
        name: What the value is called in the refusal (``'predicate'``).
        keys: The fields it must have.
        optional: The fields it may have as well.
        bad: Builds the caller's error from a reason.

    Returns:
        ``doc`` itself.

    Raises:
        Exception: What ``bad`` builds, for a non-object, unknown fields or missing ones.
    """
    if not isinstance(doc, dict):
        raise bad(f"'{name}' is not an object")
    present = set(doc)
    if not keys <= present <= keys | optional:
        extra, missing = sorted(present - keys - optional), sorted(keys - present)
        raise bad(f"'{name}' has unknown fields {extra}" if extra else f"'{name}' lacks {missing}")
    return doc


def dumps(doc: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII (other characters escaped)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")
