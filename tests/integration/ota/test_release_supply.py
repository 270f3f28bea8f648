"""Release SBOM and provenance through the real CLI on a home made by ``server init``: build and
publish (simulated image, --sbom CycloneDX/SPDX), ``release verify`` from the home and from a
copied repository folder with only the public TUF root, the tamper table, bad SBOMs refused."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import Key

from support.sbom import cyclonedx_doc, spdx_doc, write_sbom
from support.server import cli_json, init_home, one_error_line, override_settings, run_cli
from trustfleet.settings import SupplyChainSettings
from trustfleet.sim.image import build_image
from trustfleet.sim.process import free_port

pytestmark = pytest.mark.integration

MODEL = "sim-v1"
SIZE = 1 << 20
BUILDER = "urn:trustfleet:builder:release-cli"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("release-supply")
    path = base / "home"
    init_home(path, port=free_port())
    override_settings(path, {"supply_chain.allowed_builders": '["locked-v1=urn:other:builder"]'})
    for version in ("1.0.0", "1.1.0"):
        image = build_image(base / f"{version}.bin", version=version, size_bytes=SIZE).path
        cli_json(path, "release", "build", "--version", version, "--image", image,
            "--material", f"git+https://example.com/fw@v{version}=sha256:{'ab' * 32}")  # fmt: skip
        cli_json(path, "release", "publish", "--version", version)
    yield path


def _targets(repo: Path) -> dict[str, Any]:
    timestamp = json.loads((repo / "metadata" / "timestamp.json").read_bytes())
    snap_v = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((repo / "metadata" / f"{snap_v}.snapshot.json").read_bytes())
    version = snapshot["signed"]["meta"]["targets.json"]["version"]
    doc: dict[str, Any] = json.loads((repo / "metadata" / f"{version}.targets.json").read_bytes())
    return doc


def _target_file(repo: Path, path: str) -> Path:
    info = _targets(repo)["signed"]["targets"][path]
    directory, _, name = path.rpartition("/")
    return repo / "targets" / directory / f"{info['hashes']['sha256']}.{name}"


def _verify_repo(repo: Path, home: Path, version: str) -> subprocess.CompletedProcess[str]:
    root = home / "public" / "tuf-root.json"
    return run_cli("release", "verify", "--version", version, "--repo", repo, "--root", root,
                   "--json")  # fmt: skip


def test_a_published_release_binds_its_sbom_and_provenance(home: Path) -> None:
    shown = cli_json(home, "release", "show", "--version", "1.1.0")
    manifest = shown["manifest"]
    assert manifest["sbom"]["format"] == "cyclonedx" and manifest["sbom"]["components"] > 0
    repo = home / "ota" / "repo"
    listed = _targets(repo)["signed"]["targets"]
    for kind, ref in (("sbom", manifest["sbom"]), ("provenance", manifest["provenance"])):
        entry = listed[ref["target"]]
        assert entry["hashes"]["sha256"] == ref["sha256"] and entry["length"] == ref["length"]
        assert entry["custom"]["trustfleet"] == {"kind": kind, "model": MODEL, "version": "1.1.0"}
    verification = shown["verification"]
    assert verification["ok"] and verification["provenance"]["builder_id"] == BUILDER
    staged = home / "ota" / "staging" / MODEL / "1.1.0"
    for name in ("sbom.cdx.json", "provenance.dsse.json"):
        assert (staged / name).stat().st_mode & 0o777 == 0o600


def test_release_verify_passes_from_the_home_and_from_a_copied_repository(
    home: Path, tmp_path: Path
) -> None:
    verified = cli_json(home, "release", "verify", "--version", "1.1.0")
    assert verified["ok"] and {c["status"] for c in verified["checks"]} == {"ok"}
    assert verified["provenance"]["subject"]["sha256"] == verified["image_sha256"]
    uris = [m["uri"] for m in verified["provenance"]["materials"]]
    assert uris[0] == "file:1.1.0.bin" and uris[-1] == "git+https://example.com/fw@v1.1.0"
    copy = tmp_path / "repo"
    shutil.copytree(home / "ota" / "repo", copy)
    result = _verify_repo(copy, home, "1.1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["signed_by"] == verified["signed_by"]


def test_the_published_event_names_the_digests_and_the_builder(home: Path) -> None:
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    rt = Runtime.open(load_server_settings(home))
    try:
        with rt.uow.begin(read_only=True) as tx:
            events = tx.events.list(type="release.published", limit=100)
    finally:
        rt.close()
    details = next(e.details for e in events if e.details["version"] == "1.1.0")
    shown = json.loads(
        _target_file(home / "ota" / "repo", f"{MODEL}/1.1.0/release.json").read_bytes()
    )
    assert details["sbom_sha256"] == shown["sbom"]["sha256"]
    assert details["provenance_sha256"] == shown["provenance"]["sha256"]
    assert details["sbom_components"] == shown["sbom"]["components"]
    assert (details["sbom_format"], details["builder_id"]) == ("cyclonedx", BUILDER)


def test_independent_readers_accept_the_envelope_and_the_sbom(home: Path) -> None:
    """securesystemslib's DSSE verifier (with the targets key of the root) and
    cyclonedx-python-lib's JSON schema validator read what we publish."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    repo = home / "ota" / "repo"
    root = json.loads((home / "public" / "tuf-root.json").read_bytes())["signed"]
    keyid = root["roles"]["targets"]["keyids"][0]
    key = Key.from_dict(keyid, dict(root["keys"][keyid]))
    envelope_bytes = _target_file(repo, f"{MODEL}/1.1.0/provenance.dsse.json").read_bytes()
    envelope = SslibEnvelope.from_dict(json.loads(envelope_bytes))
    verified = envelope.verify([key], 1)
    assert keyid in verified
    statement = json.loads(base64.b64decode(json.loads(envelope_bytes)["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicate"]["runDetails"]["builder"]["id"] == BUILDER
    sbom = _target_file(repo, f"{MODEL}/1.1.0/sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom) is None


def test_a_real_image_takes_a_supplied_sbom(home: Path, tmp_path: Path) -> None:
    """A CycloneDX SBOM is staged; an SPDX one goes the whole way to 'release verify'."""
    image = tmp_path / "real.bin"
    image.write_bytes(bytes(range(256)) * 256)
    for version, doc, fmt, count in (
        ("3.3.0", cyclonedx_doc(components=3), "cyclonedx", 3),
        ("3.4.0", spdx_doc(packages=4), "spdx", 4),
    ):
        sbom = write_sbom(tmp_path / f"{fmt}.json", doc)
        result = run_cli("release", "build", "--home", home, "--version", version, "--image",
                         image, "--model", "real-v1", "--sbom", sbom)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"SBOM {fmt} with {count} components" in " ".join(result.stdout.split())
    staged = home / "ota" / "staging" / "real-v1" / "3.3.0" / "sbom.cdx.json"
    assert staged.read_bytes() == (tmp_path / "cyclonedx.json").read_bytes()
    cli_json(home, "release", "publish", "--version", "3.4.0", "--model", "real-v1")
    verified = cli_json(home, "release", "verify", "--version", "3.4.0", "--model", "real-v1")
    assert verified["ok"] and verified["sbom"]["format"] == "spdx"
    assert verified["provenance"]["materials"][1]["uri"] == "file:spdx.json"


BAD_SBOMS: dict[str, tuple[Callable[[Path], tuple[Path, list[str]]], str, str]] = {
    "not-json": (lambda p: (_write(p, b"not json {"), []), "ota.sbom.invalid", "JSON"),
    "wrong-bomformat": (
        lambda p: (_write(p, json.dumps({**cyclonedx_doc(), "bomFormat": "X"})), []),
        "ota.sbom.invalid",
        "bomFormat",
    ),
    "oversize": (
        lambda p: (_write(p, b" " * SupplyChainSettings().max_sbom_bytes + b"{}"), []),
        "ota.sbom.invalid",
        "larger than",
    ),
    "too-many-components": (
        lambda p: (_write(p, json.dumps(cyclonedx_doc(components=50_001))), []),
        "ota.sbom.invalid",
        "components",
    ),
    "schema-refuses": (
        lambda p: (_write(p, json.dumps({**cyclonedx_doc(), "version": "one"})), []),
        "ota.sbom.invalid",
        "",
    ),
    "bad-material": (
        lambda p: (write_sbom(p), ["nodigest"]), "ota.provenance.material", "nodigest"
    ),
}  # fmt: skip


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.fixture(scope="module")
def runtime(home: Path) -> Iterator[Any]:
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    rt = Runtime.open(load_server_settings(home))
    yield rt
    rt.close()


@pytest.mark.parametrize("case", list(BAD_SBOMS.values()), ids=list(BAD_SBOMS))
def test_a_bad_sbom_is_refused(
    runtime: Any, home: Path, tmp_path: Path, case: tuple[Callable[..., Any], str, str]
) -> None:
    from trustfleet.errors import TrustFleetError
    from trustfleet.services.ota import build_release

    make, code, words = case
    sbom, materials = make(tmp_path / "sbom.json")
    image = _write(tmp_path / "real.bin", b"\x7fELF" + bytes(4096))
    with pytest.raises(TrustFleetError) as info:
        build_release(runtime, image=image, version="9.0.0", model="real-v1", min_version=None,
                      now=_now(), sbom=sbom, materials=materials)  # fmt: skip
    assert info.value.code == code and words in info.value.message and info.value.hint
    assert not (home / "ota" / "staging" / "real-v1" / "9.0.0").exists()


def test_a_real_image_without_sbom_is_refused_with_one_line(home: Path, tmp_path: Path) -> None:
    image = _write(tmp_path / "real.bin", b"\x7fELF" + bytes(4096))
    args = ["release", "build", "--home", home, "--version", "9.0.0", "--image", image]
    line = one_error_line(run_cli(*args, "--model", "real-v1"))
    assert "its SBOM must be supplied" in line and "--sbom FILE" in line


def test_a_builder_not_allowed_for_the_model_is_refused(home: Path, tmp_path: Path) -> None:
    image = build_image(tmp_path / "l.bin", version="1.0.0", size_bytes=SIZE).path
    args = ["release", "build", "--home", home, "--version", "1.0.0", "--image", image]
    result = run_cli(*args, "--model", "locked-v1")
    line = one_error_line(result)
    assert "not allowed for model locked-v1" in line and result.returncode == 7


VERIFY_USAGE = {
    "neither": (["--version", "1.0.0"], "give either --home"),
    "root-missing": (["--version", "1.0.0", "--repo", "{home}", "--root", "/nonexistent"], "root"),
    "root-not-tuf": (
        ["--version", "1.0.0", "--repo", "{home}/ota/repo", "--root", "{home}/trustfleet.toml"],
        "not TUF root metadata",
    ),
}


@pytest.mark.parametrize("case", list(VERIFY_USAGE.values()), ids=list(VERIFY_USAGE))
def test_release_verify_bad_arguments_fail_with_one_line(
    home: Path, case: tuple[list[str], str]
) -> None:
    args, expected = case
    line = one_error_line(
        run_cli("release", "verify", *[a.replace("{home}", str(home)) for a in args])
    )
    assert expected in line


def _now() -> datetime:
    return datetime.now(UTC)


# --- the tamper table: a COPY of the published repository, verified with the public root ---


class Tamper:
    """What a tamper case may use: the copied repository, the home, a forged envelope."""

    def __init__(self, repo: Path, home: Path, forged: bytes) -> None:
        self.repo, self.home, self.forged = repo, home, forged

    def file(self, version: str, name: str) -> Path:
        return _target_file(self.repo, f"{MODEL}/{version}/{name}")

    def relist(self, version: str, name: str, data: bytes) -> None:
        """Publish ``data`` as the target, name it in an edited manifest, and sign new TUF
        targets/snapshot/timestamp with the home's online keys (an insider's re-listing)."""
        from trustfleet.ota import RepoFiles
        from trustfleet.ota.repository import make_target
        from trustfleet.services._ota_release import with_targets
        from trustfleet.services._ota_state import write_state
        from trustfleet.settings import load_server_settings

        settings, files = load_server_settings(self.home), RepoFiles(self.repo)
        path, manifest_path = f"{MODEL}/{version}/{name}", f"{MODEL}/{version}/release.json"
        manifest = json.loads(self.file(version, "release.json").read_bytes())
        sha = hashlib.sha256(data).hexdigest()
        manifest["provenance"] |= {"length": len(data), "sha256": sha}
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        msha = hashlib.sha256(manifest_bytes).hexdigest()
        files.put_target(path, sha256=sha, source=data)
        files.put_target(manifest_path, sha256=msha, source=manifest_bytes)
        custom = {"model": MODEL, "version": version}
        targets = [
            make_target(path, length=len(data), sha256=sha,
                        custom={"kind": "provenance", **custom}),
            make_target(manifest_path, length=len(manifest_bytes), sha256=msha,
                        custom={"kind": "manifest", **custom}),
        ]  # fmt: skip
        with files.locked():
            new = with_targets(settings, files, targets, now=_now())
            write_state(settings, files, new, ["targets", "snapshot", "timestamp"])


@pytest.fixture(scope="module")
def forged(home: Path) -> bytes:
    """1.1.0's provenance statement in an envelope signed by a second SoftHSM2 key."""
    from trustfleet.ota.dsse import parse_envelope, render_envelope, sign_envelope
    from trustfleet.ota.signer import Pkcs11Signer
    from trustfleet.services._ota_keys import ensure_token, open_home_token
    from trustfleet.settings import load_server_settings

    settings = load_server_settings(home)
    envelope = _target_file(home / "ota" / "repo", f"{MODEL}/1.1.0/provenance.dsse.json")
    payload = parse_envelope(envelope.read_bytes(), max_bytes=1 << 20).payload
    ensure_token(settings, "tf-test-other")
    with open_home_token(settings, "tf-test-other") as session:
        signer = Pkcs11Signer(session.generate_ec_key("other-release"))
        return render_envelope(sign_envelope(payload, signer=signer))


def _swap_sbom(t: Tamper) -> None:
    t.file("1.1.0", "sbom.cdx.json").write_bytes(t.file("1.0.0", "sbom.cdx.json").read_bytes())


def _other_provenance(t: Tamper) -> None:
    other = t.file("1.0.0", "provenance.dsse.json").read_bytes()
    t.file("1.1.0", "provenance.dsse.json").write_bytes(other)


def _resigned(t: Tamper) -> None:
    t.file("1.1.0", "provenance.dsse.json").write_bytes(t.forged)


def _edited_payload(t: Tamper) -> None:
    path = t.file("1.1.0", "provenance.dsse.json")
    env = json.loads(path.read_bytes())
    statement = base64.b64decode(env["payload"]).replace(BUILDER.encode(), b"urn:evil:builder")
    env["payload"] = base64.b64encode(statement).decode()
    path.write_text(json.dumps(env))


def _edited_manifest(t: Tamper) -> None:
    path = t.file("1.1.0", "release.json")
    path.write_bytes(path.read_bytes().replace(b'"min_version":"1.0.0"', b'"min_version":"1.1.0"'))


def _edited_targets(t: Tamper) -> None:
    _swap_sbom(t)
    meta = sorted(
        (t.repo / "metadata").glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0])
    )[-1]
    doc = json.loads(meta.read_bytes())
    entry = doc["signed"]["targets"][f"{MODEL}/1.1.0/sbom.cdx.json"]
    data = t.file("1.0.0", "sbom.cdx.json").read_bytes()
    entry["hashes"]["sha256"] = hashlib.sha256(data).hexdigest()
    meta.write_text(json.dumps(doc))


def _relisted_resigned(t: Tamper) -> None:
    t.relist("1.1.0", "provenance.dsse.json", t.forged)


def _relisted_other_image(t: Tamper) -> None:
    t.relist("1.1.0", "provenance.dsse.json", t.file("1.0.0", "provenance.dsse.json").read_bytes())


def _swap_image(t: Tamper) -> None:
    t.file("1.1.0", "image.bin").write_bytes(t.file("1.0.0", "image.bin").read_bytes())


TAMPERS: dict[str, tuple[Callable[[Tamper], None], str, str]] = {
    "image-swapped": (_swap_image, "image digest", "release.image.digest"),
    "sbom-swapped": (_swap_sbom, "SBOM", "release.sbom.digest"),
    "provenance-of-another-release": (
        _other_provenance, "provenance signature", "release.provenance.digest"
    ),
    "envelope-signed-by-another-key": (
        _resigned, "provenance signature", "release.provenance.digest"
    ),
    "envelope-payload-edited": (
        _edited_payload, "provenance signature", "release.provenance.digest"
    ),
    "manifest-edited": (_edited_manifest, "manifest", "release.manifest.digest"),
    "targets-metadata-edited": (_edited_targets, "TUF metadata", "release.tuf.metadata"),
    "relisted-envelope-by-another-key": (
        _relisted_resigned, "provenance signature", "release.provenance.signature"
    ),
    "relisted-provenance-of-another-image": (
        _relisted_other_image, "provenance subject", "release.provenance.subject"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERS.values()), ids=list(TAMPERS))
def test_release_verify_refuses_each_tampered_copy_with_its_reason(
    home: Path, forged: bytes, tmp_path: Path, case: tuple[Callable[[Tamper], None], str, str]
) -> None:
    tamper, check, code = case
    copy = tmp_path / "repo"
    shutil.copytree(home / "ota" / "repo", copy)
    tamper(Tamper(copy, home, forged))
    result = _verify_repo(copy, home, "1.1.0")
    assert result.returncode == 7, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    rows = {row["check"]: row for row in doc["checks"]}
    assert rows[check]["status"] == "refused" and code in rows[check]["reason"], rows
    assert not doc["ok"] and "Traceback" not in result.stderr
    if code == "release.tuf.metadata":
        assert "TUF refused" in rows[check]["reason"]
