"""The manifest's supply-chain fields (issue 17): ``sbom`` and ``provenance``, bound by digest.

Both are optional (a manifest without them keeps its old bytes), rendered canonically when
present and parsed as strictly as the rest: each refusal pins its exact message.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from support.releasekit import SHA_A, SHA_B, SHA_C
from support.releasekit import sample_manifest as _manifest
from trustfleet.errors import InvalidInput
from trustfleet.ota.manifest import (
    SBOM_FORMATS,
    ProvenanceRef,
    ReleaseManifest,
    SbomRef,
    parse_manifest,
    provenance_target,
    render_manifest,
    sbom_target,
)

SBOM = SbomRef(
    target=sbom_target("sim-v1", "2.0.0", "cyclonedx"),
    format="cyclonedx",
    length=4096,
    sha256=SHA_B,
    components=197,
)
PROVENANCE = ProvenanceRef(target=provenance_target("sim-v1", "2.0.0"), length=1536, sha256=SHA_C)
MAX_COMPONENTS = 1 << 24


def _full() -> ReleaseManifest:
    return _manifest(sbom=SBOM, provenance=PROVENANCE)


def _edit(section: str, key: str | None, value: Any) -> bytes:
    """The full manifest with ``section.key`` set (``key`` None: the whole section; DELETE)."""
    doc: dict[str, Any] = json.loads(render_manifest(_full()))
    node, name = (doc, section) if key is None else (doc[section], key)
    if value is DELETE:
        del node[name]
    else:
        node[name] = value
    return json.dumps(doc).encode()


DELETE = object()


def _refusal(data: bytes) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_manifest(data)
    assert caught.value.code == "ota.manifest.invalid"
    return caught.value.message.removeprefix("release manifest refused: ")


def test_target_paths_and_formats() -> None:
    assert SBOM_FORMATS == ("cyclonedx", "spdx")
    assert sbom_target("m", "1.2.3", "cyclonedx") == "m/1.2.3/sbom.cdx.json"
    assert sbom_target("m", "1.2.3", "spdx") == "m/1.2.3/sbom.spdx.json"
    assert provenance_target("m", "1.2.3") == "m/1.2.3/provenance.dsse.json"


def test_absent_fields_keep_the_old_bytes_and_parse_as_none() -> None:
    old = render_manifest(_manifest())
    assert b"sbom" not in old and b"provenance" not in old
    parsed = parse_manifest(old)
    assert parsed.sbom is None and parsed.provenance is None


def test_render_writes_both_fields_exactly() -> None:
    doc = json.loads(render_manifest(_full()))
    assert doc["sbom"] == {
        "target": "sim-v1/2.0.0/sbom.cdx.json",
        "format": "cyclonedx",
        "length": 4096,
        "sha256": SHA_B,
        "components": 197,
    }
    assert doc["provenance"] == {
        "target": "sim-v1/2.0.0/provenance.dsse.json",
        "length": 1536,
        "sha256": SHA_C,
    }
    rendered = render_manifest(_full())
    assert rendered == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "manifest",
    [
        _manifest(sbom=SBOM, provenance=PROVENANCE),
        _manifest(sbom=SBOM),
        _manifest(provenance=PROVENANCE),
        _manifest(sbom=dataclasses.replace(SBOM, format="spdx", components=0, length=0)),
    ],
    ids=["both", "sbom-only", "provenance-only", "spdx-empty"],
)
def test_round_trip(manifest: ReleaseManifest) -> None:
    assert parse_manifest(render_manifest(manifest)) == manifest


def test_values_are_frozen() -> None:
    for value in (SBOM, PROVENANCE):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.target = "x"  # type: ignore[misc]


REFUSED: list[tuple[str, bytes, str]] = [
    ("unknown-top-field", _edit("sboms", None, {}), "'manifest' has unknown fields ['sboms']"),
    ("sbom-not-object", _edit("sbom", None, []), "'sbom' is not an object"),
    ("sbom-extra", _edit("sbom", "x", 1), "'sbom' has unknown fields ['x']"),
    ("sbom-lacks", _edit("sbom", "components", DELETE), "'sbom' lacks ['components']"),
    (
        "sbom-format",
        _edit("sbom", "format", "swid"),
        "'sbom.format' must be one of ['cyclonedx', 'spdx']",
    ),
    (
        "sbom-components-text",
        _edit("sbom", "components", "9"),
        "'sbom.components' must be a non-negative integer",
    ),
    (
        "sbom-components-negative",
        _edit("sbom", "components", -1),
        "'sbom.components' must be a non-negative integer",
    ),
    (
        "sbom-components-over",
        _edit("sbom", "components", MAX_COMPONENTS + 1),
        "'sbom.components' is too large",
    ),
    ("sbom-target", _edit("sbom", "target", "/abs"), "'sbom.target' is not a target path"),
    (
        "sbom-length",
        _edit("sbom", "length", True),
        "'sbom.length' must be a non-negative integer",
    ),
    (
        "sbom-sha",
        _edit("sbom", "sha256", SHA_A.upper()),
        "'sbom.sha256' must be 64 lowercase hex digits",
    ),
    ("prov-not-object", _edit("provenance", None, "x"), "'provenance' is not an object"),
    ("prov-extra", _edit("provenance", "keyid", "k"), "'provenance' has unknown fields ['keyid']"),
    ("prov-lacks", _edit("provenance", "sha256", DELETE), "'provenance' lacks ['sha256']"),
    (
        "prov-target",
        _edit("provenance", "target", "m/../p"),
        "'provenance.target' is not a target path",
    ),
    (
        "prov-length",
        _edit("provenance", "length", 1.5),
        "'provenance.length' must be a non-negative integer",
    ),
    (
        "prov-sha",
        _edit("provenance", "sha256", "ab"),
        "'provenance.sha256' must be 64 lowercase hex digits",
    ),
]


@pytest.mark.parametrize(("data", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_supply_fields_say_why(data: bytes, why: str) -> None:
    assert _refusal(data) == why


def test_component_count_at_its_bound_is_accepted() -> None:
    parsed = parse_manifest(_edit("sbom", "components", MAX_COMPONENTS))
    assert parsed.sbom is not None and parsed.sbom.components == MAX_COMPONENTS


def test_spdx_format_is_read() -> None:
    parsed = parse_manifest(_edit("sbom", "format", "spdx"))
    assert parsed.sbom is not None and parsed.sbom.format == "spdx"
