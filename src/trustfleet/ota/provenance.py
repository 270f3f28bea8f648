"""Release provenance: an in-toto Statement v1 with an SLSA Provenance v1 predicate.

The statement says which builder made which image from which inputs. Its subject is the image
(name and SHA-256); ``buildDefinition`` names our build type, the build's external parameters
(model, version, min_version, image file name, SBOM format) and the resolved dependencies
(materials: the image file, the supplied SBOM, ``--material`` inputs); ``runDetails`` names the
builder (id and version) and the build's invocation id and times (RFC 3339, UTC).

Rendering is canonical (sorted keys, no whitespace), parsing is strict and bounded; neither
reads the clock. The statement travels in a DSSE envelope (:mod:`trustfleet.ota.dsse`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trustfleet.errors import InvalidInput
from trustfleet.ota import _strict_json

__all__ = [
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "Material",
    "Provenance",
    "parse_material",
    "parse_statement",
    "render_statement",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:trustfleet:release-build:v1"
"""Our build type: ``trustfleet release build`` (docs/supply-chain.md, Formats)."""

_VERSION_KEY = "trustfleet"
"""The key of ``runDetails.builder.version`` (an SLSA map) naming our builder's version."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
"""RFC 3339 date-time (upper-case T and Z, as python's ``fromisoformat`` reads them)."""
_MAX_STRING = 1024
_MAX_PARAMETERS = 64
_MAX_MATERIALS = 1100
_PREDICATE = frozenset({"buildDefinition", "runDetails"})
_DEFINITION = frozenset({"buildType", "externalParameters"})
_DEFINITION_OPTIONAL = frozenset({"internalParameters", "resolvedDependencies"})


@dataclass(frozen=True, slots=True)
class Material:
    """One input of a build (SLSA ``ResourceDescriptor``): its URI and SHA-256 (hex)."""

    uri: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """What a release's provenance says (see the module docstring for the fields' places)."""

    subject_name: str
    subject_sha256: str
    builder_id: str
    build_type: str
    parameters: Mapping[str, str]
    """SLSA ``externalParameters`` (all strings)."""
    materials: tuple[Material, ...]
    """SLSA ``resolvedDependencies``."""
    invocation_id: str
    started_on: datetime
    finished_on: datetime
    builder_version: str


def parse_material(text: str) -> Material:
    """Parse a build input given as ``URI=sha256:HEX`` (``release build --material``).

    Args:
        text: The input; the URI may itself contain ``=`` (the last one separates).

    Returns:
        The material (digest lowercased).

    Raises:
        InvalidInput: Not ``URI=sha256:HEX`` with a URI and 64 hex digits (code
            ``ota.provenance.material``).
    """
    uri, _, digest = text.rpartition("=")
    algorithm, _, hex_digest = digest.partition(":")
    hex_digest = hex_digest.lower()
    if (
        algorithm != "sha256"
        or _HEX64.fullmatch(hex_digest) is None
        or len(uri) > _MAX_STRING
        or _URI.fullmatch(uri) is None
    ):
        raise InvalidInput(
            f"'{text[:80]}' is not a material URI=sha256:HEX",
            hint="name the input by a URI and its SHA-256, e.g."
            " git+https://example.com/fw@v1=sha256:<64 hex digits>",
            code="ota.provenance.material",
        )
    return Material(uri, hex_digest)


def render_statement(p: Provenance) -> bytes:
    """The canonical JSON of the in-toto Statement v1 (SLSA Provenance v1 predicate).

    Args:
        p: The provenance.

    Returns:
        Sorted-key, compact JSON bytes.
    """
    definition: dict[str, Any] = {
        "buildType": p.build_type,
        "externalParameters": dict(p.parameters),
        "resolvedDependencies": [
            {"uri": m.uri, "digest": {"sha256": m.sha256}} for m in p.materials
        ],
    }
    run = {
        "builder": {"id": p.builder_id, "version": {_VERSION_KEY: p.builder_version}},
        "metadata": {
            "invocationId": p.invocation_id,
            "startedOn": _rfc3339(p.started_on),
            "finishedOn": _rfc3339(p.finished_on),
        },
    }
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": p.subject_name, "digest": {"sha256": p.subject_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"buildDefinition": definition, "runDetails": run},
    }
    return _strict_json.dumps(doc)


def parse_statement(data: bytes, *, max_bytes: int) -> Provenance:
    """Parse an in-toto Statement v1 carrying an SLSA Provenance v1 predicate.

    Args:
        data: The statement's bytes (a DSSE payload).
        max_bytes: The largest statement accepted.

    Returns:
        The provenance.

    Raises:
        InvalidInput: Oversize, not JSON, another ``_type`` or ``predicateType``, not exactly
            one subject with a ``sha256`` digest of 64 lowercase hex digits, non-string
            parameters, missing builder or times (code ``ota.provenance.invalid``).
    """
    doc = _strict_json.fields(
        _strict_json.load(data, max_bytes=max_bytes, bad=_bad),
        "statement",
        frozenset({"_type", "subject", "predicateType", "predicate"}),
        bad=_bad,
    )
    if doc["_type"] != STATEMENT_TYPE:
        raise _bad(f"'_type' is not '{STATEMENT_TYPE}'")
    if doc["predicateType"] != PREDICATE_TYPE:
        raise _bad(f"'predicateType' is not '{PREDICATE_TYPE}'")
    subject = doc["subject"]
    if not isinstance(subject, list) or len(subject) != 1:
        raise _bad("'subject' must list exactly one artifact (the image)")
    name, sha256 = _descriptor(subject[0], "subject[0]", name_key="name")
    predicate = _strict_json.fields(doc["predicate"], "predicate", _PREDICATE, bad=_bad)
    definition = _strict_json.fields(
        predicate["buildDefinition"],
        "buildDefinition",
        _DEFINITION,
        _DEFINITION_OPTIONAL,
        bad=_bad,
    )
    builder_id, builder_version, invocation, started, finished = _run(predicate["runDetails"])
    return Provenance(
        subject_name=name,
        subject_sha256=sha256,
        builder_id=builder_id,
        build_type=_string(definition["buildType"], "buildType"),
        parameters=_parameters(definition["externalParameters"]),
        materials=_materials(definition.get("resolvedDependencies", [])),
        invocation_id=invocation,
        started_on=started,
        finished_on=finished,
        builder_version=builder_version,
    )


def _rfc3339(when: datetime) -> str:
    utc = when.astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "microseconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def _bad(why: str) -> InvalidInput:
    return InvalidInput(
        f"provenance statement refused: {why}",
        hint="the provenance must be an in-toto Statement v1 with an SLSA Provenance v1"
        " predicate, as 'trustfleet release build' writes it",
        code="ota.provenance.invalid",
    )


def _string(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > _MAX_STRING or (not empty and not value):
        raise _bad(f"'{name}' must be a string of 1 to {_MAX_STRING} characters")
    return value


def _descriptor(value: Any, name: str, *, name_key: str) -> tuple[str, str]:
    doc = _strict_json.fields(value, name, frozenset({name_key, "digest"}), bad=_bad)
    digest = _strict_json.fields(doc["digest"], f"{name}.digest", frozenset({"sha256"}), bad=_bad)
    sha256 = digest["sha256"]
    if not isinstance(sha256, str) or _HEX64.fullmatch(sha256) is None:
        raise _bad(f"'{name}.digest.sha256' must be 64 lowercase hex digits")
    return _string(doc[name_key], f"{name}.{name_key}"), sha256


def _parameters(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > _MAX_PARAMETERS:
        raise _bad(f"'externalParameters' must be an object of at most {_MAX_PARAMETERS} fields")
    for key, item in value.items():
        _string(key, "externalParameters key")
        _string(item, f"externalParameters.{key[:40]}", empty=True)
    return dict(value)


def _materials(value: Any) -> tuple[Material, ...]:
    if not isinstance(value, list) or len(value) > _MAX_MATERIALS:
        raise _bad(f"'resolvedDependencies' must be a list of at most {_MAX_MATERIALS} items")
    found = []
    for index, item in enumerate(value):
        uri, sha256 = _descriptor(item, f"resolvedDependencies[{index}]", name_key="uri")
        found.append(Material(uri, sha256))
    return tuple(found)


def _run(value: Any) -> tuple[str, str, str, datetime, datetime]:
    run = _strict_json.fields(value, "runDetails", frozenset({"builder", "metadata"}), bad=_bad)
    builder = _strict_json.fields(
        run["builder"], "builder", frozenset({"id"}), frozenset({"version"}), bad=_bad
    )
    version = builder.get("version", {})
    if not isinstance(version, dict) or not all(isinstance(v, str) for v in version.values()):
        raise _bad("'builder.version' must be an object of strings")
    meta = _strict_json.fields(
        run["metadata"],
        "metadata",
        frozenset({"invocationId", "startedOn", "finishedOn"}),
        bad=_bad,
    )
    started = _time(meta["startedOn"], "startedOn")
    finished = _time(meta["finishedOn"], "finishedOn")
    if finished < started:
        raise _bad("'finishedOn' is before 'startedOn'")
    return (
        _string(builder["id"], "builder.id"),
        _string(version.get(_VERSION_KEY, ""), "builder.version", empty=True),
        _string(meta["invocationId"], "invocationId"),
        started,
        finished,
    )


def _time(value: Any, name: str) -> datetime:
    text = _string(value, name)
    if _RFC3339.fullmatch(text) is None:
        raise _bad(f"'{name}' is not an RFC 3339 time")
    try:
        # the pattern requires a zone (Z or an offset); Python 3.11 reads a trailing "Z"
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 off UTC
        raise _bad(f"'{name}' is not an RFC 3339 time") from exc
