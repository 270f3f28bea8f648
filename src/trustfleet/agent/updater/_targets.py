"""Choosing and checking what to install, from TUF-verified metadata and manifest bytes only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from trustfleet.agent.platform.bootloader import Fuses
from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota.manifest import ReleaseManifest, manifest_target, parse_manifest
from trustfleet.ota.versions import Version, parse_version

if TYPE_CHECKING:
    from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported

    from trustfleet.agent.updater.tufclient import TargetFile

__all__ = [
    "Refusal",
    "Repository",
    "check_policy",
    "choose_manifest",
    "fetch_manifest",
    "matching_target",
]

_MANIFEST_NAME = "release.json"


class Repository(Protocol):
    """What the engine needs from the TUF client (:class:`~.tufclient.TufClient`)."""

    def refresh(self) -> None:
        """Refresh the trusted metadata."""
        ...

    def target(self, path: str) -> TargetFile | None:
        """The verified description of ``path``, if listed."""
        ...

    def targets(self) -> list[TargetFile]:
        """Every listed target."""
        ...

    def targets_keys(self) -> Mapping[str, Key]:
        """The targets role's keys from the trusted root (they sign release provenance)."""
        ...

    def download(
        self, target: TargetFile, *, progress: Callable[[int, int], None] | None = None
    ) -> Path:
        """The verified file of ``target``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why nothing is installed: ``refused`` (policy) or ``up_to_date``."""

    state: Literal["refused", "up_to_date"]
    reason: str
    code: str


def _version_in(path: str, model: str) -> Version | None:
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != model or parts[2] != _MANIFEST_NAME:
        return None
    try:
        return parse_version(parts[1])
    except InvalidInput:
        return None


def choose_manifest(
    repo: Repository, *, model: str, version: str | None, max_bytes: int
) -> TargetFile | Refusal:
    """The manifest target of ``version`` (or of the newest release of ``model``).

    Returns:
        The target, or why there is nothing to install.
    """
    if version is not None:
        try:
            parse_version(version)
        except InvalidInput:
            return Refusal(
                state="refused",
                reason=f"'{str(version)[:40]}' is not a release version",
                code="ota.version.invalid",
            )
        target = repo.target(manifest_target(model, version))
        if target is None:
            why = f"no release {version} is published for model {model}"
            return Refusal(state="refused", reason=why, code="ota.release.unknown")
    else:
        listed = [(v, t) for t in repo.targets() if (v := _version_in(t.path, model))]
        if not listed:
            why = f"no release is published for model {model}"
            return Refusal(state="up_to_date", reason=why, code="ota.release.none")
        target = max(listed, key=lambda pair: pair[0])[1]
    problem = _custom_problem(target.custom, model=model, path=target.path)
    if problem:
        return Refusal(state="refused", reason=problem, code="ota.model.mismatch")
    if target.length > max_bytes:
        why = f"the manifest is {target.length} bytes, more than {max_bytes}"
        return Refusal(state="refused", reason=why, code="ota.manifest.too_large")
    return target


def _custom_problem(custom: Mapping[str, Any], *, model: str, path: str) -> str:
    info = custom.get("trustfleet")
    if not isinstance(info, Mapping):
        return f"{path} carries no trustfleet target metadata"
    version = path.split("/")[1]
    if info.get("kind") != "manifest" or info.get("model") != model:
        return f"{path} is not a manifest for model {model} (targets metadata)"
    if info.get("version") != version:
        return f"{path} is listed for version {str(info.get('version'))[:40]}"
    return ""


def fetch_manifest(
    repo: Repository, target: TargetFile, *, model: str, max_bytes: int
) -> tuple[bytes, ReleaseManifest]:
    """Download the manifest (TUF-verified bytes) and parse it.

    Raises:
        InvalidInput: The bytes are not a manifest (``ota.manifest.invalid``).
        VerificationFailed: The manifest is for another model or version than its target
            path (``ota.manifest.mismatch``).
    """
    path = repo.download(target)
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    manifest = parse_manifest(data, max_bytes=max_bytes)
    if f"{manifest.model}/{manifest.version}/{_MANIFEST_NAME}" != target.path:
        raise VerificationFailed(
            f"{target.path} holds the manifest of {manifest.model} {manifest.version}",
            hint="the release was published under the wrong path",
            code="ota.manifest.mismatch",
        )
    del model
    return data, manifest


def check_policy(
    manifest: ReleaseManifest, *, fuses: Fuses, installed: str, floor: str, max_image_bytes: int
) -> Refusal | None:
    """Whether this device may install ``manifest`` (model, floor, newer, min_version, key)."""
    version, current = manifest.version_key, parse_version(installed)
    if manifest.model == fuses.model and parse_version(floor) <= version <= current:
        why = f"installed {installed} is not older than release {manifest.version}"
        return Refusal(state="up_to_date", reason=why, code="ota.up_to_date")
    rules = [
        (
            manifest.model != fuses.model,
            "ota.model.mismatch",
            f"release is for model {manifest.model}, this device is {fuses.model}",
        ),
        (
            version < parse_version(floor),
            "ota.version.below_floor",
            f"release {manifest.version} is below this device's version floor {floor}",
        ),
        (
            current < manifest.min_version_key,
            "ota.version.min_version",
            f"installed {installed} is below the release's min_version {manifest.min_version}",
        ),
        (
            manifest.boot.key_sha256 != fuses.boot_key_sha256,
            "ota.boot.key",
            "release is signed for another boot key than the fused one",
        ),
        (
            manifest.image.length > max_image_bytes,
            "ota.image.too_large",
            f"image of {manifest.image.length} bytes exceeds {max_image_bytes}",
        ),
    ]
    for broken, code, why in rules:
        if broken:
            return Refusal(state="refused", reason=why, code=code)
    return None


def matching_target(repo: Repository, path: str, *, length: int, sha256: str) -> TargetFile:
    """The TUF target ``path``, which must have the manifest's length and SHA-256.

    Raises:
        VerificationFailed: It is not listed or differs (code ``ota.manifest.target_mismatch``).
    """
    target = repo.target(path)
    if target is None or target.length != length or target.sha256 != sha256:
        raise VerificationFailed(
            f"{path} is not listed in the TUF targets as the manifest describes it",
            hint="the release is inconsistent; republish it",
            code="ota.manifest.target_mismatch",
        )
    return target
