"""SBOMs: CycloneDX and SPDX structural checks, and the image's deterministic CycloneDX 1.6.

cyclonedx-python-lib's strict JSON-schema validator (dev venv) is the independent reader of
what we write and of CycloneDX documents we accept.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from hypothesis import given
from hypothesis import strategies as st

from support.jsonvalues import json_values
from trustfleet.errors import InvalidInput
from trustfleet.ota.sbom import Component, SbomInfo, check_sbom, cyclonedx_for_image

MAX = 1 << 20
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
_SCHEMAS = {"1.4": SchemaVersion.V1_4, "1.5": SchemaVersion.V1_5, "1.6": SchemaVersion.V1_6}
_COMPONENTS = [
    Component(
        name="linux", version="6.6.1", purl="pkg:generic/linux@6.6.1", kind="operating-system"
    ),
    Component(name="busybox", version="1.36.1", purl="pkg:generic/busybox@1.36.1", sha256="b" * 64),
    Component(name="config", version="", purl="", kind="file"),
]


def _image_sbom(**changes: Any) -> bytes:
    args: dict[str, Any] = {
        "model": "gw-1",
        "version": "1.2.0",
        "image_sha256": "a" * 64,
        "image_length": 4096,
        "components": _COMPONENTS,
        "timestamp": NOW,
        "product_version": "0.17.0",
    }
    args.update(changes)
    return cyclonedx_for_image(**args)


def _strict_errors(data: bytes, spec: str = "1.6") -> Any:
    return JsonStrictValidator(_SCHEMAS[spec]).validate_str(data.decode())


def test_image_sbom_is_valid_cyclonedx_1_6_and_deterministic() -> None:
    data = _image_sbom()
    assert _strict_errors(data) is None
    assert _image_sbom(components=list(reversed(_COMPONENTS))) == data
    assert _image_sbom(timestamp=NOW.astimezone(timezone(timedelta(hours=2)))) == data
    doc = json.loads(data)
    assert doc["serialNumber"] == json.loads(_image_sbom(product_version="9"))["serialNumber"]
    assert doc["serialNumber"] != json.loads(_image_sbom(version="1.2.1"))["serialNumber"]
    image = doc["metadata"]["component"]
    assert image["type"] == "firmware"
    assert image["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert doc["metadata"]["tools"]["components"][0]["name"] == "trustfleet"
    info = check_sbom(data, max_bytes=MAX, max_components=10)
    assert info == SbomInfo(
        format="cyclonedx", spec_version="1.6", components=3, serial=doc["serialNumber"]
    )


def test_image_sbom_of_no_components_is_valid() -> None:
    data = _image_sbom(components=[])
    assert _strict_errors(data) is None
    assert check_sbom(data, max_bytes=MAX, max_components=1).components == 0


@pytest.mark.parametrize(
    ("components", "why"),
    [
        ([Component(name="x", version="1", purl="p", kind="gadget")], "unknown type"),
        (
            [
                Component(name="x", version="1", purl="p"),
                Component(name="y", version="1", purl="p"),
            ],
            "share the bom-ref",
        ),
        (
            [Component(name="x", version="1", purl="urn:trustfleet:image:gw-1:1.2.0")],
            "share the bom-ref",
        ),
    ],
    ids=["unknown-kind", "shared-purl", "image-bom-ref"],
)
def test_image_sbom_refusals(components: list[Component], why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as info:
        _image_sbom(components=components)
    assert info.value.code == "ota.sbom.invalid"


def _cyclonedx(spec: str = "1.6", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": spec,
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "version": 1,
        "metadata": {"component": {"type": "application", "name": "acme-app", "bom-ref": "app"}},
        "components": [
            {
                "type": "library",
                "name": "tomcat-catalina",
                "version": "9.0.14",
                "purl": "pkg:maven/org.apache.tomcat/tomcat-catalina@9.0.14",
                "bom-ref": "catalina",
                "hashes": [{"alg": "SHA-256", "content": "c" * 64}],
                "components": [
                    {"type": "library", "name": "nested-a", "bom-ref": "a"},
                    {
                        "type": "framework",
                        "name": "nested-b",
                        "components": [{"type": "file", "name": "deep"}],
                    },
                ],
            },
            {"type": "firmware", "name": "bootloader", "version": "2.1"},
        ],
    }
    doc.update(changes)
    return doc


def _check(doc: Any, *, max_components: int = 100) -> SbomInfo:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return check_sbom(data, max_bytes=MAX, max_components=max_components)


@pytest.mark.parametrize("spec", ["1.4", "1.5", "1.6"])
def test_cyclonedx_versions_accepted_and_nested_counted(spec: str) -> None:
    doc = _cyclonedx(spec)
    assert _strict_errors(json.dumps(doc).encode(), spec) is None  # the independent reader agrees
    info = _check(doc)
    assert (info.format, info.spec_version, info.components) == ("cyclonedx", spec, 5)
    assert info.serial == doc["serialNumber"]


def test_minimal_cyclonedx_is_accepted() -> None:
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.5"}
    assert _strict_errors(json.dumps(doc).encode(), "1.5") is None
    assert _check(doc) == SbomInfo(format="cyclonedx", spec_version="1.5", components=0, serial="")


def _spdx(spec: str = "SPDX-2.3", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "spdxVersion": spec,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "gw-1-image",
        "documentNamespace": "https://example.com/spdx/gw-1-1.2.0-6b1a",
        "creationInfo": {
            "created": "2026-11-21T12:00:00Z",
            "creators": ["Tool: yocto-spdx-4.0", "Organization: Example Inc."],
        },
        "packages": [
            {
                "SPDXID": "SPDXRef-Package-busybox",
                "name": "busybox",
                "versionInfo": "1.36.1",
                "downloadLocation": "https://busybox.net/downloads/busybox-1.36.1.tar.bz2",
                "filesAnalyzed": False,
                "licenseConcluded": "GPL-2.0-only",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:generic/busybox@1.36.1",
                    }
                ],
            },
            {"SPDXID": "SPDXRef-Package-linux", "name": "linux", "downloadLocation": "NOASSERTION"},
        ],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-Package-linux",
            }
        ],
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize("spec", ["SPDX-2.2", "SPDX-2.3"])
def test_spdx_accepted(spec: str) -> None:
    info = _check(_spdx(spec))
    assert info == SbomInfo(
        format="spdx",
        spec_version=spec[5:],
        components=2,
        serial="https://example.com/spdx/gw-1-1.2.0-6b1a",
    )


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "library", "name": "leaf"}
    for _ in range(levels):
        node = {"type": "library", "name": "n", "components": [node]}
    return _cyclonedx(components=[node])


def _component(**changes: Any) -> list[dict[str, Any]]:
    comp: dict[str, Any] = {"type": "library", "name": "x"}
    comp.update(changes)
    return [{"type": "library", "name": f"ok{i}"} for i in range(3)] + [comp]


def _package(**changes: Any) -> list[dict[str, Any]]:
    package = {"SPDXID": "SPDXRef-P", "name": "p", "downloadLocation": "NONE"}
    package.update(changes)
    return [package]


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b"[]", "not a JSON object"),
        ({"name": "x"}, "neither CycloneDX"),
        (_cyclonedx(bomFormat="cyclonedx"), "bomFormat is not 'CycloneDX'"),
        (_cyclonedx("1.3"), "specVersion must be one of"),
        (_cyclonedx(specVersion=["1.6"]), "specVersion must be one of"),
        (_cyclonedx(serialNumber="urn:uuid:nope"), "serialNumber"),
        (_cyclonedx(version=0), "version must be an integer"),
        (_cyclonedx(version=True), "version must be an integer"),
        (_cyclonedx(metadata=[]), "metadata is not an object"),
        (
            _cyclonedx(metadata={"component": {"type": "library"}}),
            "metadata.component.name is missing",
        ),
        (_cyclonedx(components={}), "components is not an array"),
        (_cyclonedx(components=[*_component()[:2], {}]), "components[2].type is missing"),
        (_cyclonedx(components=_component(name=None)), "components[3].name is not a string"),
        (_cyclonedx(components=[{"type": "library"}]), "components[0].name is missing"),
        (_cyclonedx(components=_component(type="widget")), "components[3].type 'widget' is not"),
        (_cyclonedx("1.4", components=_component(type="data")), "is not a CycloneDX 1.4 type"),
        (_cyclonedx(components=_component(**{"bom-ref": "app"})), "bom-ref 'app' is not unique"),
        (
            _cyclonedx(components=_component(hashes=[{"alg": "SHA-256", "content": "xyz"}])),
            "not hex",
        ),
        (
            _cyclonedx(components=_component(hashes=[{"alg": "SHA-256"}])),
            "hashes[0].content is missing",
        ),
        (
            _cyclonedx(components=_component(components=[{"type": "file"}])),
            "components[3].components[0].name",
        ),
        (_deep(40), "nest deeper than 32"),
        (_spdx("SPDX-2.1"), "spdxVersion must be one of"),
        (_spdx(dataLicense="MIT"), "dataLicense"),
        (_spdx(SPDXID="SPDXRef-DOC"), "SPDXID is not 'SPDXRef-DOCUMENT'"),
        (_without(_spdx(), "name"), "document.name is missing"),
        (_spdx(documentNamespace="no-uri"), "documentNamespace"),
        (_spdx(documentNamespace="https://x/y#frag"), "documentNamespace"),
        (_without(_spdx(), "creationInfo"), "creationInfo is not an object"),
        (_spdx(creationInfo={"created": "2026-11-21", "creators": ["Tool: x"]}), "created is not"),
        (
            _spdx(creationInfo={"created": "2026-11-21T12:00:00Z", "creators": []}),
            "creators is missing",
        ),
        (_spdx(creationInfo={"created": "2026-11-21T12:00:00Z", "creators": ["x"]}), "creators[0]"),
        (_spdx(packages={}), "packages is not an array"),
        (_spdx(packages=_package(SPDXID="Pkg-1")), "packages[0].SPDXID is not"),
        (_spdx(packages=_package() * 2), "packages[1].SPDXID 'SPDXRef-P' is not unique"),
        (_spdx(packages=_package(name=None)), "packages[0].name is not a string"),
        (_spdx(packages=_package(downloadLocation="")), "packages[0].downloadLocation is empty"),
        (
            _spdx(packages=[_without(_package()[0], "downloadLocation")]),
            "downloadLocation is missing",
        ),
    ],
    ids=[
        "bom",
        "array",
        "neither",
        "bomformat-case",
        "cdx-1.3",
        "spec-not-string",
        "bad-serial",
        "version-0",
        "version-bool",
        "metadata-array",
        "metadata-component-no-name",
        "components-object",
        "component-empty",
        "name-null",
        "name-missing",
        "type-unknown",
        "type-too-new",
        "bom-ref-twice",
        "hash-not-hex",
        "hash-no-content",
        "nested-no-name",
        "too-deep",
        "spdx-2.1",
        "data-license",
        "document-spdxid",
        "document-no-name",
        "namespace-not-uri",
        "namespace-fragment",
        "no-creation-info",
        "created-date-only",
        "no-creators",
        "creator-prefix",
        "packages-object",
        "package-spdxid",
        "package-twice",
        "package-name-null",
        "download-empty",
        "download-missing",
    ],
)
def test_check_refusals(doc: Any, why: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(why)) as info:
        _check(doc)
    assert info.value.code == "ota.sbom.invalid" and info.value.hint


def test_bounds() -> None:
    with pytest.raises(InvalidInput, match="larger than 10 bytes"):
        check_sbom(b"{" + b" " * 20 + b"}", max_bytes=10, max_components=1)
    with pytest.raises(InvalidInput, match="more than 4 components"):
        _check(_cyclonedx(), max_components=4)
    assert _check(_cyclonedx(), max_components=5).components == 5
    with pytest.raises(InvalidInput, match="more than 1 packages"):
        _check(_spdx(), max_components=1)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_invalid_input(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        check_sbom(data, max_bytes=256, max_components=10)


_KEYS = [
    "components",
    "metadata",
    "specVersion",
    "serialNumber",
    "version",
    "packages",
    "creationInfo",
    "documentNamespace",
    "spdxVersion",
    "name",
]


@given(st.booleans(), st.sampled_from(_KEYS), json_values, json_values)
def test_arbitrary_json_only_invalid_input(spdx: bool, key: str, value: Any, item: Any) -> None:
    doc = _spdx() if spdx else _cyclonedx()
    doc["packages" if spdx else "components"].append(item)
    doc[key] = value
    with contextlib.suppress(InvalidInput):
        _check(doc)


def test_cyclonedx_fields_and_limits() -> None:
    for changes in (
        {"version": 1},
        {"purl": 7},
        {"hashes": [{"content": "ab"}]},
        {"components": [{"type": "library", "name": "n", "components": {}}]},
    ):
        with pytest.raises(InvalidInput, match=r"components\[3\]"):
            _check(_cyclonedx(components=_component(**changes)))
    assert _check(_cyclonedx(version=2)).components == 5
    assert _check(_deep(31)).components == 32  # 32 levels: the limit
    with pytest.raises(InvalidInput, match="nest deeper than 32"):
        _check(_deep(32))
    first = [{"type": "library"}, {"type": "widget", "name": "w"}]
    with pytest.raises(InvalidInput, match=r"components\[0\]\.name is missing"):
        _check(_cyclonedx(components=first))  # the first problem in document order


def test_spdx_fields_and_limits() -> None:
    with pytest.raises(InvalidInput, match=r"document\.name is empty"):
        _check(_spdx(name=""))
    assert _check(_spdx(), max_components=2).components == 2
    assert _check(_without(_spdx(), "packages")).components == 0
