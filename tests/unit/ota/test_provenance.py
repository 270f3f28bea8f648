"""The in-toto Statement v1 / SLSA Provenance v1: round trips, materials and refusals."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.attestkit import sample_provenance
from support.jsonvalues import json_values
from trustfleet.errors import InvalidInput
from trustfleet.ota.provenance import (
    BUILD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Material,
    Provenance,
    parse_material,
    parse_statement,
    render_statement,
)

MAX = 256 * 1024
SHA = "0" * 64
_TEXT = st.text(min_size=1, max_size=30)


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_statement(sample_provenance()))
    doc.update(changes)
    return doc


def _edit(path: str, value: Any) -> bytes:
    """The sample statement with the field at dotted ``path`` set (``...`` deletes it)."""
    doc = _doc()
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return json.dumps(doc).encode()


def test_round_trip_is_canonical_and_spec_shaped() -> None:
    provenance = sample_provenance()
    data = render_statement(provenance)
    assert parse_statement(data, max_bytes=MAX) == provenance
    assert render_statement(parse_statement(data, max_bytes=MAX)) == data
    doc = json.loads(data)
    assert (doc["_type"], doc["predicateType"]) == (STATEMENT_TYPE, PREDICATE_TYPE)
    definition, run = doc["predicate"]["buildDefinition"], doc["predicate"]["runDetails"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["resolvedDependencies"][0] == {
        "uri": provenance.materials[0].uri,
        "digest": {"sha256": provenance.materials[0].sha256},
    }
    assert run["builder"]["version"] == {"trustfleet": provenance.builder_version}
    assert run["metadata"]["startedOn"] == "2026-11-21T12:00:00Z"
    assert b" " not in data


@given(
    name=_TEXT,
    params=st.dictionaries(_TEXT, st.text(max_size=30), max_size=8),
    uris=st.lists(st.from_regex(r"[a-z]{1,8}:[a-z0-9/._-]{1,30}", fullmatch=True), max_size=5),
    micro=st.integers(0, 999_999),
    offset_h=st.integers(-12, 12),
)
def test_round_trip_property(
    name: str, params: dict[str, str], uris: list[str], micro: int, offset_h: int
) -> None:
    zone = timezone(timedelta(hours=offset_h))
    started = datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=zone)
    provenance = sample_provenance(
        subject_name=name,
        parameters=params,
        materials=tuple(Material(u, "0" * 64) for u in uris),
        started_on=started,
        finished_on=started + timedelta(seconds=1),
    )
    parsed = parse_statement(render_statement(provenance), max_bytes=MAX)
    assert parsed == provenance
    assert parsed.started_on.tzinfo is UTC


def test_parse_material() -> None:
    hex_digest = "AB" * 32
    material = parse_material(f"git+https://example.com/fw?ref=v1=sha256:{hex_digest}")
    assert material == Material("git+https://example.com/fw?ref=v1", "ab" * 32)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "file:x",
        "file:x=sha256:abc",
        "file:x=sha1:" + "a" * 64,
        "=sha256:" + "a" * 64,
        "no scheme=sha256:" + "a" * 64,
        "x" * 2000 + ":y=sha256:" + "a" * 64,
    ],
    ids=["empty", "no-digest", "short-hex", "sha1", "no-uri", "space-in-uri", "long-uri"],
)
def test_parse_material_refusals(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_material(text)
    assert info.value.code == "ota.provenance.material" and info.value.hint


_SUBJECT = {"name": "image.bin", "digest": {"sha256": "a" * 64}}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{}" + b" " * MAX, "larger than"),
        (b"[1]", "not an object"),
        (_edit("_type", "https://in-toto.io/Statement/v0.1"), "'_type' is not"),
        (_edit("predicateType", "https://slsa.dev/provenance/v0.2"), "'predicateType' is not"),
        (_edit("subject", []), "exactly one"),
        (_edit("subject", [_SUBJECT, _SUBJECT]), "exactly one"),
        (_edit("subject.0.digest", {"sha256": "A" * 64}), "64 lowercase hex"),
        (
            _edit("subject.0.digest", {"sha256": "a" * 64, "sha512": "b" * 128}),
            "'subject[0].digest' has unknown fields",
        ),
        (_edit("subject.0.digest", {"sha512": "b" * 128}), "unknown fields"),
        (_edit("subject.0.name", ""), "'subject[0].name' must be"),
        (_edit("predicate.buildDefinition.externalParameters", {"model": 1}), "externalParameters"),
        (_edit("predicate.buildDefinition.externalParameters", ["model"]), "externalParameters"),
        (
            _edit("predicate.buildDefinition.buildType", ...),
            "'buildDefinition' lacks ['buildType']",
        ),
        (_edit("predicate.buildDefinition.resolvedDependencies", {}), "resolvedDependencies"),
        (
            _edit("predicate.buildDefinition.resolvedDependencies.0.digest", {}),
            "'resolvedDependencies[0].digest' lacks ['sha256']",
        ),
        (_edit("predicate.runDetails.builder.id", 3), "'builder.id' must be"),
        (_edit("predicate.runDetails.builder.version", "1.0"), "builder.version"),
        (
            _edit("predicate.runDetails.metadata.startedOn", "2026-11-21"),
            "'startedOn' is not an RFC 3339",
        ),
        (
            _edit("predicate.runDetails.metadata.finishedOn", "2026-11-21T12:00:00"),
            "'finishedOn' is not an RFC 3339",
        ),
        (_edit("predicate.runDetails.metadata.startedOn", "20261121T120000Z"), "RFC 3339"),
        (_edit("predicate.runDetails.metadata.startedOn", "2026-11-21T12Z"), "RFC 3339"),
        (_edit("predicate.runDetails.metadata.startedOn", "0001-01-01T00:00:00+01:00"), "RFC 3339"),
        (_edit("predicate.runDetails.metadata.finishedOn", "2026-11-21T11:00:00Z"), "before"),
        (
            _edit("predicate.runDetails.metadata.invocationId", ...),
            "'metadata' lacks ['invocationId']",
        ),
        (_edit("predicate.extra", {}), "'predicate' has unknown fields"),
    ],
    ids=[
        "oversize",
        "not-object",
        "statement-v0.1",
        "provenance-v0.2",
        "no-subject",
        "two-subjects",
        "uppercase-digest",
        "extra-digest",
        "sha512-only",
        "empty-name",
        "int-parameter",
        "list-parameters",
        "no-build-type",
        "dependencies-not-list",
        "dependency-without-digest",
        "builder-id-not-string",
        "builder-version-not-map",
        "date-only",
        "naive-time",
        "iso-basic-format",
        "hour-only",
        "time-overflow",
        "finished-before-started",
        "no-invocation",
        "unknown-predicate-field",
    ],
)
def test_parse_refusals(data: bytes, why: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(why)) as info:
        parse_statement(data, max_bytes=MAX)
    assert info.value.code == "ota.provenance.invalid" and info.value.hint


def test_optional_fields_of_the_spec_are_read() -> None:
    doc = _doc()
    doc["predicate"]["buildDefinition"]["internalParameters"] = {"anything": [1, 2]}
    del doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    del doc["predicate"]["runDetails"]["builder"]["version"]
    parsed = parse_statement(json.dumps(doc).encode(), max_bytes=MAX)
    assert parsed.materials == () and parsed.builder_version == ""


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_invalid_input(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_statement(data, max_bytes=256)


_PATHS = [
    "subject",
    "subject.0",
    "subject.0.digest",
    "predicate",
    "predicate.buildDefinition",
    "predicate.buildDefinition.externalParameters",
    "predicate.buildDefinition.resolvedDependencies",
    "predicate.runDetails",
    "predicate.runDetails.builder",
    "predicate.runDetails.metadata",
    "predicate.runDetails.metadata.startedOn",
]


@given(st.sampled_from(_PATHS), json_values)
def test_arbitrary_json_in_any_field_only_invalid_input(path: str, value: Any) -> None:
    with contextlib.suppress(InvalidInput):
        parse_statement(_edit(path, value), max_bytes=MAX)


_GOLDEN = (
    b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"buildDefinition":{"buildType":'
    b'"urn:trustfleet:release-build:v1","externalParameters":{"min_version":"0.0.1","model":"m",'
    b'"version":"1.0.0"},"resolvedDependencies":[{"digest":{"sha256":"' + b"a" * 64 + b'"},'
    b'"uri":"file:image.bin"}]},"runDetails":{"builder":{"id":"urn:trustfleet:builder:release-cli",'
    b'"version":{"trustfleet":"0.17.0"}},"metadata":{"finishedOn":"2026-11-21T12:00:03Z",'
    b'"invocationId":"urn:uuid:00000000-0000-4000-8000-000000000001","startedOn":'
    b'"2026-11-21T12:00:00Z"}}},"predicateType":"https://slsa.dev/provenance/v1","subject":'
    b'[{"digest":{"sha256":"' + b"a" * 64 + b'"},"name":"image.bin"}]}'
)


def test_known_answer_rendering() -> None:
    assert render_statement(sample_provenance()) == _GOLDEN
    assert (STATEMENT_TYPE, PREDICATE_TYPE, BUILD_TYPE) == (
        "https://in-toto.io/Statement/v1",
        "https://slsa.dev/provenance/v1",
        "urn:trustfleet:release-build:v1",
    )


def _parsed(path: str, value: Any) -> Any:
    return parse_statement(_edit(path, value), max_bytes=MAX)


def test_bounds_at_their_limits() -> None:
    definition = "predicate.buildDefinition"
    ok = _parsed(f"{definition}.externalParameters", {f"k{i}": "v" * 1024 for i in range(64)})
    assert len(ok.parameters) == 64
    refused: list[tuple[str, Any]] = [
        (f"{definition}.externalParameters", {f"k{i}": "v" for i in range(65)}),
        (f"{definition}.externalParameters", {"k": "v" * 1025}),
        (f"{definition}.externalParameters", {"": "v"}),
        (f"{definition}.resolvedDependencies", [{"uri": "u", "digest": {"sha256": SHA}}] * 1101),
    ]
    for path, value in refused:
        with pytest.raises(InvalidInput):
            _parsed(path, value)
    many = _parsed(
        f"{definition}.resolvedDependencies", [{"uri": "u", "digest": {"sha256": SHA}}] * 1100
    )
    assert len(many.materials) == 1100
    same = _parsed("predicate.runDetails.metadata.finishedOn", "2026-11-21T12:00:00Z")
    assert same.finished_on == same.started_on
    uri = "a:" + "b" * 1022
    assert parse_material(f"{uri}=sha256:{SHA}").uri == uri
    with pytest.raises(InvalidInput):
        parse_material(f"{uri}b=sha256:{SHA}")


def test_values_are_frozen_keyword_only_with_slots() -> None:
    for value in (Material("u", SHA), sample_provenance()):
        assert not hasattr(value, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, "x")
    with pytest.raises(TypeError):
        Provenance(*[None] * 10)  # type: ignore[misc]
