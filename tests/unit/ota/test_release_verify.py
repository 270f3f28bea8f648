"""The release-chain verifier: the intact release passes; each tampered release is refused
with its code (issue 17 §3, the tamper table); ``check_provenance`` as a device runs it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, SSlibKey

from support.attestkit import BUILDER, LIMITS, Release, release_files
from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota.manifest import (
    image_target,
    manifest_target,
    provenance_target,
    sbom_target,
)
from trustfleet.ota.release_verify import (
    ReleaseFinding,
    ReleaseVerdict,
    TargetDigest,
    check_provenance,
    verify_release_chain,
)

RELEASE_KEY = CryptoSigner(ec.generate_private_key(ec.SECP256R1()))
OTHER_KEY = CryptoSigner(ec.generate_private_key(ec.SECP256R1()))
KEYS: dict[str, SSlibKey] = {RELEASE_KEY.public_key.keyid: RELEASE_KEY.public_key}
MANIFEST = manifest_target("m", "1.0.0")
SBOM = sbom_target("m", "1.0.0", "cyclonedx")
PROVENANCE = provenance_target("m", "1.0.0")


def _verify(release: Release, allowed_builders: tuple[str, ...] = ()) -> ReleaseVerdict:
    """Verify ``release`` (model ``m``, 1.0.0) under :data:`KEYS` and the kit's limits."""
    return verify_release_chain(
        model="m",
        version="1.0.0",
        targets=release.targets,
        files=release.files,
        release_keys=KEYS,
        allowed_builders=allowed_builders,
        limits=LIMITS,
    )


def _edit_envelope(change: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def _payload(doc: dict[str, object]) -> None:
    statement = base64.b64decode(str(doc["payload"])).replace(
        b'"urn:trustfleet:builder', b'"urn:evil:builder'
    )
    doc["payload"] = base64.b64encode(statement).decode()


def _signature(doc: dict[str, object]) -> None:
    sig = doc["signatures"][0]  # type: ignore[index]  # JSON
    raw = bytearray(base64.b64decode(sig["sig"]))
    raw[-1] ^= 1
    sig["sig"] = base64.b64encode(bytes(raw)).decode()


def _keyid(doc: dict[str, object]) -> None:
    doc["signatures"][0]["keyid"] = OTHER_KEY.public_key.keyid  # type: ignore[index]  # JSON


def _put(release: Release, path: str, data: bytes, **kwargs: bool) -> Release:
    release.put(path, data, **kwargs)
    return release


def _swapped_sbom() -> Release:
    """The SBOM path holds another release's SBOM; TUF lists it consistently."""
    other = release_files(RELEASE_KEY, image=b"another image", components=3)
    return _put(release_files(RELEASE_KEY), SBOM, other.files[SBOM])


def _swapped_provenance() -> Release:
    other = release_files(RELEASE_KEY, image=b"another image")
    return _put(release_files(RELEASE_KEY), PROVENANCE, other.files[PROVENANCE])


def _other_version_manifest() -> Release:
    """The 1.0.0 manifest path holds 1.1.0's manifest (TUF-consistent)."""
    newer = release_files(RELEASE_KEY, version="1.1.0")
    return _put(release_files(RELEASE_KEY), MANIFEST, newer.files[manifest_target("m", "1.1.0")])


def _image_mismatch() -> Release:
    release = release_files(RELEASE_KEY)
    release.targets[image_target("m", "1.0.0")] = TargetDigest(
        13, hashlib.sha256(b"evil").hexdigest()
    )
    return release


def _edited_after_tuf(path: str) -> Callable[[], Release]:
    def make() -> Release:
        release = release_files(RELEASE_KEY)
        release.files[path] = release.files[path] + b" "
        return release

    return make


def _dropped(path: str, **how: bool) -> Callable[[], Release]:
    def make() -> Release:
        release = release_files(RELEASE_KEY)
        if not how.get("listed", True):
            del release.targets[path]
        if not how.get("fetched", True):
            del release.files[path]
        return release

    return make


@dataclass(frozen=True)
class Case:
    make: Callable[[], Release]
    codes: tuple[str, ...]
    allowed: tuple[str, ...] = ()


CASES = {
    "intact": Case(lambda: release_files(RELEASE_KEY), ()),
    "intact-allowed-builder": Case(lambda: release_files(RELEASE_KEY), (), (BUILDER, "urn:x")),
    "swapped-sbom": Case(_swapped_sbom, ("release.sbom.digest",)),
    "swapped-provenance": Case(_swapped_provenance, ("release.provenance.digest",)),
    "provenance-for-another-image": Case(
        lambda: release_files(RELEASE_KEY, subject_sha256="f" * 64), ("release.provenance.subject",)
    ),
    "signature-by-another-key": Case(
        lambda: release_files(OTHER_KEY), ("release.provenance.signature",)
    ),
    "edited-envelope-payload": Case(
        lambda: release_files(RELEASE_KEY, envelope_edit=_edit_envelope(_payload)),
        ("release.provenance.signature",),
    ),
    "edited-signature": Case(
        lambda: release_files(RELEASE_KEY, envelope_edit=_edit_envelope(_signature)),
        ("release.provenance.signature",),
    ),
    "signature-moved-to-another-keyid": Case(
        lambda: release_files(RELEASE_KEY, envelope_edit=_edit_envelope(_keyid)),
        ("release.provenance.signature",),
    ),
    "envelope-not-json": Case(
        lambda: release_files(RELEASE_KEY, envelope_edit=lambda _: b"not json"),
        ("release.provenance.invalid",),
    ),
    "envelope-other-payload-type": Case(
        lambda: release_files(
            RELEASE_KEY, envelope_edit=_edit_envelope(lambda d: d.update(payloadType="text/plain"))
        ),
        ("release.provenance.invalid",),
    ),
    "manifest-names-no-sbom": Case(
        lambda: release_files(RELEASE_KEY, with_sbom=False), ("release.sbom.missing",)
    ),
    "manifest-names-no-provenance": Case(
        lambda: release_files(RELEASE_KEY, with_provenance=False), ("release.provenance.missing",)
    ),
    "sbom-not-in-tuf": Case(_dropped(SBOM, listed=False), ("release.sbom.missing",)),
    "sbom-not-fetched": Case(_dropped(SBOM, fetched=False), ("release.sbom.missing",)),
    "provenance-not-in-tuf": Case(
        _dropped(PROVENANCE, listed=False), ("release.provenance.missing",)
    ),
    "provenance-not-fetched": Case(
        _dropped(PROVENANCE, fetched=False), ("release.provenance.missing",)
    ),
    "manifest-not-in-tuf": Case(_dropped(MANIFEST, listed=False), ("release.manifest.missing",)),
    "manifest-edited-after-tuf": Case(_edited_after_tuf(MANIFEST), ("release.manifest.digest",)),
    "manifest-unparsable": Case(
        lambda: _put(release_files(RELEASE_KEY), MANIFEST, b"{}"), ("release.manifest.invalid",)
    ),
    "manifest-for-another-version": Case(
        _other_version_manifest,
        # its image, SBOM and provenance are 1.1.0's, and that version's targets are absent
        (
            "release.manifest.mismatch",
            "release.image.digest",
            "release.sbom.missing",
            "release.provenance.missing",
        ),
    ),
    "image-digest-mismatch": Case(_image_mismatch, ("release.image.digest",)),
    "sbom-edited-after-tuf": Case(_edited_after_tuf(SBOM), ("release.sbom.digest",)),
    "provenance-edited-after-tuf": Case(
        _edited_after_tuf(PROVENANCE), ("release.provenance.digest",)
    ),
    "sbom-count-mismatch": Case(
        lambda: release_files(RELEASE_KEY, declared_components=4), ("release.sbom.count",)
    ),
    "sbom-not-an-sbom": Case(
        lambda: _put(release_files(RELEASE_KEY), SBOM, b"{}"), ("release.sbom.digest",)
    ),
    "signed-statement-of-another-predicate": Case(
        lambda: release_files(
            RELEASE_KEY,
            statement_edit=lambda b: b.replace(
                b"slsa.dev/provenance/v1", b"slsa.dev/provenance/v0.2"
            ),
        ),
        ("release.provenance.invalid",),
    ),
    "sbom-format-not-the-manifests": Case(
        lambda: release_files(RELEASE_KEY, declared_format="spdx"), ("release.sbom.invalid",)
    ),
    "builder-not-allowed": Case(
        lambda: release_files(RELEASE_KEY), ("release.provenance.builder",), ("urn:other",)
    ),
    "everything-wrong-at-once": Case(
        lambda: release_files(
            OTHER_KEY, declared_components=9, with_sbom=True, subject_sha256="f" * 64
        ),
        ("release.sbom.count", "release.provenance.signature"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tamper_table(name: str) -> None:
    case = CASES[name]
    release = case.make()
    verdict = _verify(release, allowed_builders=case.allowed)
    assert tuple(f.code for f in verdict.findings) == case.codes
    assert verdict.ok is (not case.codes)
    assert all(f.message for f in verdict.findings)
    if verdict.ok:
        assert verdict.image_sha256 == hashlib.sha256(release.image).hexdigest()
        assert verdict.sbom is not None and verdict.sbom.components == 3
        assert verdict.provenance is not None and verdict.provenance.builder_id == BUILDER
        assert verdict.signed_by == (RELEASE_KEY.public_key.keyid,)
    elif any(code.startswith("release.provenance.") for code in case.codes):
        assert verdict.provenance is None and verdict.signed_by == ()


def test_sbom_not_an_sbom_but_bound_by_the_manifest() -> None:
    """A garbage SBOM the manifest does bind (a bad build) is release.sbom.invalid."""
    release = release_files(RELEASE_KEY, components=0)
    sbom = b'{"bomFormat":"CycloneDX","specVersion":"1.2"}'
    manifest = json.loads(release.files[MANIFEST])
    manifest["sbom"].update(length=len(sbom), sha256=hashlib.sha256(sbom).hexdigest())
    release.put(SBOM, sbom)
    release.put(MANIFEST, json.dumps(manifest).encode())
    verdict = _verify(release)
    assert verdict.findings == (
        ReleaseFinding("release.sbom.invalid", verdict.findings[0].message),
    )
    assert "specVersion" in verdict.findings[0].message


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({}, None),
        ({"image_sha256": "0" * 64}, "release.provenance.subject"),
        ({"allowed_builders": ["urn:x"]}, "release.provenance.builder"),
        ({"allowed_builders": [BUILDER]}, None),
        ({"keys": {}}, "release.provenance.signature"),
        (
            {"keys": {OTHER_KEY.public_key.keyid: OTHER_KEY.public_key}},
            "release.provenance.signature",
        ),
        ({"max_bytes": 100}, "release.provenance.invalid"),
    ],
    ids=["ok", "subject", "builder", "allowed", "no-keys", "other-key", "oversize"],
)
def test_check_provenance_as_a_device_runs_it(changes: dict[str, Any], code: str | None) -> None:
    release = release_files(RELEASE_KEY)
    image_sha256 = hashlib.sha256(release.image).hexdigest()
    args: dict[str, Any] = {
        "image_sha256": image_sha256,
        "keys": KEYS,
        "max_bytes": LIMITS.max_provenance_bytes,
    }
    args.update(changes)
    if code is None:
        provenance = check_provenance(release.files[PROVENANCE], **args)
        assert provenance.subject_sha256 == image_sha256
        return
    with pytest.raises((InvalidInput, VerificationFailed)) as info:
        check_provenance(release.files[PROVENANCE], **args)
    assert info.value.code == code and info.value.hint


def test_verdict_values_are_frozen() -> None:
    release = release_files(RELEASE_KEY)
    verdict = _verify(release)
    values = [
        verdict,
        ReleaseFinding("c", "m"),
        TargetDigest(1, "a"),
        LIMITS,
    ]
    for value in values:
        assert not hasattr(value, "__dict__")  # slots
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, "x")
    with pytest.raises(TypeError):  # keyword-only
        ReleaseVerdict("m", "1.0.0", (), None, None, None, ())  # type: ignore[misc]
