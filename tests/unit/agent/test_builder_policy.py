"""The device's builder policy: the pure decision (a table), the TUF fetch around it, and the
update engine refusing a release before any image byte is fetched."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from otakit import MODEL, BootKey, LocalRepository, image_bytes, make_device, manifest_for
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # re-exported

from support.releasekit import NOW
from trustfleet.agent.platform import boot
from trustfleet.agent.updater._builders import check_builder, provenance_refusal
from trustfleet.agent.updater._reports import OtaReport
from trustfleet.agent.updater.engine import EngineLimits, UpdateEngine, UpdateRequest
from trustfleet.ota.dsse import render_envelope, sign_envelope
from trustfleet.ota.manifest import (
    ProvenanceRef,
    ReleaseManifest,
    image_target,
    manifest_target,
    parse_manifest,
    provenance_target,
    render_manifest,
)
from trustfleet.ota.provenance import BUILD_TYPE, Provenance, render_statement
from trustfleet.ota.status_report import parse_ota_status

CI = "urn:example:builder:ci"
OTHER = "urn:example:builder:other"
RELEASE_KEY = CryptoSigner.generate_ecdsa()
ANOTHER_KEY = CryptoSigner.generate_ecdsa()
KEYS = {RELEASE_KEY.public_key.keyid: RELEASE_KEY.public_key}
MAX = 256 * 1024
V1, V2 = image_bytes("1.0.0"), image_bytes("2.0.0")
BOOT = BootKey()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def envelope(image: bytes, *, builder: str = CI, signer: CryptoSigner = RELEASE_KEY) -> bytes:
    """A release's provenance: DSSE over an in-toto Statement whose subject is ``image``."""
    statement = Provenance(
        subject_name="image.bin",
        subject_sha256=_sha(image),
        builder_id=builder,
        build_type=BUILD_TYPE,
        parameters={"model": MODEL, "version": "2.0.0"},
        materials=(),
        invocation_id="urn:uuid:00000000-0000-0000-0000-000000000001",
        started_on=NOW,
        finished_on=NOW,
        builder_version="test",
    )
    return render_envelope(sign_envelope(render_statement(statement), signer=signer))


def edited(data: bytes) -> bytes:
    """The envelope with its payload changed (the signature kept)."""
    return data.replace(b'"payload":"', b'"payload":"eyJh', 1)


def manifest(image: bytes, provenance: bytes | None) -> ReleaseManifest:
    plain = parse_manifest(manifest_for(BOOT, image, version="2.0.0"))
    if provenance is None:
        return plain
    ref = ProvenanceRef(
        target=provenance_target(MODEL, "2.0.0"), length=len(provenance), sha256=_sha(provenance)
    )
    return replace(plain, provenance=ref)


# id: (allowed builders, provenance bytes or None, refusal code or None)
DECISIONS: dict[str, tuple[tuple[str, ...], bytes | None, str | None]] = {
    "no-policy": ((), envelope(V2, builder=OTHER), None),
    "no-policy-no-provenance": ((), None, None),
    "allowed": ((CI,), envelope(V2), None),
    "allowed-among-several": ((OTHER, CI), envelope(V2), None),
    "not-allowed": ((CI,), envelope(V2, builder=OTHER), "release.provenance.builder"),
    "missing-provenance": ((CI,), None, "release.provenance.missing"),
    "provenance-for-another-image": ((CI,), envelope(V1), "release.provenance.subject"),
    "bad-signature": ((CI,), envelope(V2, signer=ANOTHER_KEY), "release.provenance.signature"),
    "edited-envelope": ((CI,), edited(envelope(V2)), "release.provenance.signature"),
    "not-an-envelope": ((CI,), b'{"payload": 1}', "release.provenance.invalid"),
}


@pytest.mark.parametrize("row", list(DECISIONS), ids=list(DECISIONS))
def test_provenance_decision(row: str) -> None:
    allowed, data, code = DECISIONS[row]
    refusal = provenance_refusal(
        data, manifest=manifest(V2, data), keys=KEYS, allowed_builders=allowed, max_bytes=MAX
    )
    assert (refusal.code if refusal else None) == code
    if refusal is not None:
        assert refusal.state == "refused" and refusal.reason


def test_an_envelope_over_the_bound_is_refused() -> None:
    data = envelope(V2)
    refusal = provenance_refusal(
        data, manifest=manifest(V2, data), keys=KEYS, allowed_builders=(CI,), max_bytes=100
    )
    assert refusal is not None and refusal.code == "release.provenance.invalid"


def _repository(tmp_path: Path, *, listed: bytes | None = None) -> LocalRepository:
    repo = LocalRepository(tmp_path / "downloads")
    repo.keys = dict(KEYS)
    if listed is not None:
        custom = {"kind": "provenance", "model": MODEL, "version": "2.0.0"}
        repo.add(provenance_target(MODEL, "2.0.0"), listed, custom)
    return repo


PROVENANCE = envelope(V2)  # ECDSA signatures differ each time: one envelope for the manifest
# id: (bytes TUF lists for the provenance path or None, max bytes, refusal code or None)
FETCHES: dict[str, tuple[bytes | None, int, str | None]] = {
    "listed-and-allowed": (PROVENANCE, MAX, None),
    "not-listed-in-tuf": (None, MAX, "release.provenance.missing"),
    "listed-unlike-the-manifest": (envelope(V2), MAX, "release.provenance.digest"),
    "larger-than-the-device-reads": (PROVENANCE, 512, "release.provenance.too_large"),
}


@pytest.mark.parametrize("row", list(FETCHES), ids=list(FETCHES))
def test_provenance_fetched_through_tuf(tmp_path: Path, row: str) -> None:
    listed, max_bytes, code = FETCHES[row]
    repo = _repository(tmp_path, listed=listed)
    fetched: list[str] = []
    repo.on_download = fetched.append
    refusal = check_builder(
        repo, manifest(V2, PROVENANCE), allowed_builders=(CI,), max_bytes=max_bytes
    )
    assert (refusal.code if refusal else None) == code
    assert fetched == ([provenance_target(MODEL, "2.0.0")] if code is None else [])


def test_without_a_policy_nothing_is_fetched(tmp_path: Path) -> None:
    repo = _repository(tmp_path, listed=PROVENANCE)
    repo.on_download = lambda path: pytest.fail(f"fetched {path}")
    assert check_builder(repo, manifest(V2, PROVENANCE), allowed_builders=(), max_bytes=MAX) is None


class Device:
    """A device on 1.0.0 with the builder policy ``allowed``, and a repository offering 2.0.0."""

    def __init__(self, tmp: Path, *, allowed: tuple[str, ...], builder: str) -> None:
        self.layout = make_device(tmp / "dev", BOOT, V1, manifest_for(BOOT, V1, version="1.0.0"))
        self.repo = LocalRepository(self.layout.downloads)
        self.repo.keys = dict(KEYS)
        self.fetched: list[str] = []
        self.repo.on_download = self.fetched.append
        self.reports: list[OtaReport] = []
        self.allowed = allowed
        prov = envelope(V2, builder=builder)
        custom = {"model": MODEL, "version": "2.0.0"}
        self.repo.add(image_target(MODEL, "2.0.0"), V2, {"kind": "image", **custom})
        self.repo.add(provenance_target(MODEL, "2.0.0"), prov, {"kind": "provenance", **custom})
        doc = render_manifest(manifest(V2, prov))
        self.repo.add(manifest_target(MODEL, "2.0.0"), doc, {"kind": "manifest", **custom})

    def report(self, report: OtaReport) -> None:
        parse_ota_status(report.to_document())  # what the service's ingest accepts
        self.reports.append(report)

    def update(self) -> str:
        layout = self.layout
        engine = UpdateEngine(
            layout=layout,
            boot=boot(layout.directory, env_store=layout.env_store(), slots=layout.slots()),
            repository=lambda: self.repo,
            report=self.report,
            now=lambda: NOW,
            limits=EngineLimits(allowed_builders=self.allowed),
        )
        return engine.update(UpdateRequest(version="2.0.0", campaign="c-1")).state.state


def test_a_release_from_another_builder_is_refused_before_any_image_byte(tmp_path: Path) -> None:
    dev = Device(tmp_path, allowed=(CI,), builder=OTHER)
    assert dev.update() == "refused"
    assert [r.state for r in dev.reports] == ["checking", "refused"]
    last = dev.reports[-1]
    assert (last.code, last.version, last.campaign) == (
        "release.provenance.builder",
        "2.0.0",
        "c-1",
    )
    assert image_target(MODEL, "2.0.0") not in dev.fetched
    assert not (dev.layout.directory / "slots" / "b").exists()
    assert dev.layout.env_store().read().boot_slot == "a"


@pytest.mark.parametrize(
    ("allowed", "builder", "provenance_fetched"),
    [((CI,), CI, True), ((), OTHER, False)],
    ids=["allowed-builder", "no-policy"],
)
def test_an_accepted_release_is_installed(
    tmp_path: Path, allowed: tuple[str, ...], builder: str, provenance_fetched: bool
) -> None:
    dev = Device(tmp_path, allowed=allowed, builder=builder)
    assert dev.update() == "rebooting"
    assert image_target(MODEL, "2.0.0") in dev.fetched
    assert (provenance_target(MODEL, "2.0.0") in dev.fetched) is provenance_fetched
    assert dev.layout.env_store().read().boot_slot == "b"
