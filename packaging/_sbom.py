"""CycloneDX 1.6 SBOMs of the distributions' dependency closures (cyclonedx-python-lib).

The closure is resolved against the development venv's installed metadata
(``importlib.metadata``; markers and extras evaluated with ``packaging``). Every component is a
``pkg:pypi`` purl with its version and licenses; the root component is the distribution with its
wheel's SHA-256; the dependency graph is complete. The serial number is a uuid5 of the wheel
digest and the timestamp is SOURCE_DATE_EPOCH, so the SBOM is as reproducible as the wheel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata

from _dists import BuildError
from cyclonedx.exception.factory import InvalidSpdxLicenseException
from cyclonedx.factory.license import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["LocalDist", "Node", "render_sbom", "resolve_closure"]


@dataclass(frozen=True)
class LocalDist:
    """A distribution built here (not installed): its name, version and requirement lines."""

    name: str
    version: str
    requires: tuple[str, ...]


@dataclass
class Node:
    """One package of a closure."""

    name: str
    version: str
    licenses: tuple[str, ...]
    expression: str | None
    deps: set[str] = field(default_factory=set)


def _licenses(meta: metadata.PackageMetadata) -> tuple[str | None, tuple[str, ...]]:
    expression = meta.get("License-Expression")
    if expression:
        return expression.strip(), ()
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80:
        return None, (text,)
    names = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.count("::") >= 2
    ]
    return None, tuple(sorted(set(names)))


def _wanted(req: Requirement, extras: Sequence[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in ("", *extras))


def _installed(req: Requirement) -> metadata.Distribution:
    try:
        dist = metadata.distribution(req.name)
    except metadata.PackageNotFoundError as exc:
        raise BuildError(f"{req.name} is not installed in this venv (run make deps)") from exc
    if not req.specifier.contains(dist.version, prereleases=True):
        raise BuildError(f"{req.name} {dist.version} does not satisfy {req}")
    return dist


def _requires(
    name: str, extras: frozenset[str], local: Mapping[str, LocalDist]
) -> tuple[str, str, tuple[str | None, tuple[str, ...]], list[Requirement]]:
    if name in local:
        mine = local[name]
        reqs = [Requirement(r) for r in mine.requires]
        return mine.name, mine.version, ("Apache-2.0", ()), reqs
    dist = _installed(Requirement(name))
    reqs = [Requirement(r) for r in dist.requires or []]
    return dist.metadata["Name"], dist.version, _licenses(dist.metadata), reqs


def resolve_closure(
    requires: Sequence[str], *, local: Mapping[str, LocalDist] = {}
) -> tuple[set[str], dict[str, Node]]:
    """The top-level package names and every node of the requirements' closure.

    Raises:
        BuildError: A requirement not installed or not satisfied by what is installed.
    """
    local = {canonicalize_name(k): v for k, v in local.items()}
    nodes: dict[str, Node] = {}
    seen: dict[str, frozenset[str]] = {}
    top = [Requirement(r) for r in requires]
    queue = [(canonicalize_name(r.name), frozenset(r.extras)) for r in top if _wanted(r, ())]
    for req in top:
        if req.name in local and not req.specifier.contains(local[req.name].version):
            raise BuildError(f"{req} does not match the built {local[req.name].version}")
    while queue:
        name, extras = queue.pop()
        if name in seen and extras <= seen[name]:
            continue
        extras = extras | seen.get(name, frozenset())
        seen[name] = extras
        shown, version, (expr, names), reqs = _requires(name, extras, local)
        node = nodes.setdefault(name, Node(shown, version, names, expr))
        for req in reqs:
            if _wanted(req, sorted(extras)):
                dep = canonicalize_name(req.name)
                node.deps.add(dep)
                queue.append((dep, frozenset(req.extras)))
    return {canonicalize_name(r.name) for r in top if _wanted(r, ())}, nodes


def _purl(name: str, version: str) -> PackageURL:
    return PackageURL(type="pypi", name=canonicalize_name(name), version=version)


def _named(factory: LicenseFactory, name: str) -> DisjunctiveLicense:
    try:
        return factory.make_with_id(name)
    except InvalidSpdxLicenseException:
        return DisjunctiveLicense(name=name)


def _component(node: Node) -> Component:
    purl = _purl(node.name, node.version)
    factory = LicenseFactory()
    licenses: list[LicenseExpression | DisjunctiveLicense] = []
    if node.expression:
        licenses.append(factory.make_from_string(node.expression))  # type: ignore[arg-type]
    else:
        licenses.extend(_named(factory, n) for n in node.licenses)
    return Component(
        type=ComponentType.LIBRARY,
        name=node.name,
        version=node.version,
        purl=purl,
        bom_ref=purl.to_string(),
        licenses=licenses,
    )


def render_sbom(
    *,
    name: str,
    version: str,
    summary: str,
    wheel_sha256: str,
    requires: Sequence[str],
    epoch: int,
    local: Mapping[str, LocalDist] = {},
) -> bytes:
    """The CycloneDX 1.6 JSON SBOM of one distribution, validated before it is returned.

    Raises:
        BuildError: The closure cannot be resolved or the schema refuses the document.
    """
    top, nodes = resolve_closure(requires, local=local)
    purl = _purl(name, version)
    root = Component(
        type=ComponentType.APPLICATION,
        name=name,
        version=version,
        description=summary,
        purl=purl,
        bom_ref=purl.to_string(),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel_sha256)],
        licenses=[DisjunctiveLicense(id="Apache-2.0")],
    )
    tool = Component(type=ComponentType.APPLICATION, name="trustfleet-build", version=version)
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"sha256:{wheel_sha256}"),
        metadata=BomMetaData(
            component=root,
            tools=ToolRepository(components=[tool]),
            timestamp=datetime.fromtimestamp(epoch, UTC),
        ),
    )
    components = {key: _component(node) for key, node in sorted(nodes.items())}
    for component in components.values():
        bom.components.add(component)
    bom.register_dependency(root, [components[k] for k in sorted(top)])
    for key, node in sorted(nodes.items()):
        bom.register_dependency(components[key], [components[d] for d in sorted(node.deps)])
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise BuildError(f"the SBOM of {name} is not valid CycloneDX 1.6: {error}")
    return (text + "\n").encode()
