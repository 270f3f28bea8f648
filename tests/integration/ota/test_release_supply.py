"""Release SBOM and provenance through the real CLI on a home made by ``server init``: build and
publish (simulated image, --sbom CycloneDX/SPDX), ``release verify`` from the home and from a
copied repository folder with only the public TUF root, the tamper table, bad SBOMs refused."""

from __future__ import annotations

import base64
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
from support.server import init_home, override_settings, run_cli
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
        _ok(path, "release", "build", "--version", version, "--image", image,
            "--material", f"git+https://example.com/fw@v{version}=sha256:{'ab' * 32}")  # fmt: skip
        _ok(path, "release", "publish", "--version", version)
    yield path


def _ok(home: Path, *args: str | Path) -> dict[str, Any]:
    result = run_cli(*args, "--home", home, "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


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
    shown = _ok(home, "release", "show", "--version", "1.1.0")
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
    verified = _ok(home, "release", "verify", "--version", "1.1.0")
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
    details = [e.details for e in events if e.details["version"] == "1.1.0"][0]
    shown = _ok(home, "release", "show", "--version", "1.1.0")["manifest"]
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


@pytest.mark.parametrize(
    ("doc", "fmt", "count"),
    [(cyclonedx_doc(components=3), "cyclonedx", 3), (spdx_doc(packages=4), "spdx", 4)],
    ids=["cyclonedx", "spdx"],
)
def test_a_real_image_takes_a_supplied_sbom(
    home: Path, tmp_path: Path, doc: dict[str, Any], fmt: str, count: int
) -> None:
    image = tmp_path / "real.bin"
    image.write_bytes(bytes(range(256)) * 256)
    sbom = write_sbom(tmp_path / "sbom.json", doc)
    version = f"3.{count}.0"
    result = run_cli("release", "build", "--home", home, "--version", version, "--image", image,
                     "--model", "real-v1", "--sbom", sbom)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"SBOM {fmt} with {count} components" in " ".join(result.stdout.split())
    _ok(home, "release", "publish", "--version", version, "--model", "real-v1")
    verified = _ok(home, "release", "verify", "--version", version, "--model", "real-v1")
    assert verified["ok"] and verified["sbom"]["format"] == fmt
    assert verified["provenance"]["materials"][1]["uri"] == "file:sbom.json"


def _big_components() -> dict[str, Any]:
    return cyclonedx_doc(components=50_001)


BAD_SBOMS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "real-image-without-sbom": (lambda _: [], "its SBOM must be supplied"),
    "not-json": (lambda p: ["--sbom", str(_write(p, b"not json {"))], "SBOM refused"),
    "wrong-bomformat": (
        lambda p: ["--sbom", str(_write(p, json.dumps({**cyclonedx_doc(), "bomFormat": "X"})))],
        "SBOM refused",
    ),
    "oversize": (lambda p: ["--sbom", str(_write(p, b" " * (8 << 20) + b"{}"))], "larger than"),
    "too-many-components": (
        lambda p: ["--sbom", str(_write(p, json.dumps(_big_components())))],
        "SBOM refused",
    ),
    "bad-material": (
        lambda p: ["--sbom", str(write_sbom(p)), "--material", "nodigest"],
        "material",
    ),
}


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("case", list(BAD_SBOMS.values()), ids=list(BAD_SBOMS))
def test_a_bad_sbom_is_refused_with_one_line(
    home: Path, tmp_path: Path, case: tuple[Callable[[Path], list[str]], str]
) -> None:
    extra, expected = case
    image = tmp_path / "real.bin"
    image.write_bytes(b"\x7fELF" + bytes(4096))
    args = ["release", "build", "--home", home, "--version", "9.0.0", "--image", image]
    line = _one_error_line(run_cli(*args, "--model", "real-v1", *extra(tmp_path / "sbom.json")))
    assert expected in line and "Hint" in line
    assert not (home / "ota" / "staging" / "real-v1" / "9.0.0").exists()


def test_a_builder_not_allowed_for_the_model_is_refused(home: Path, tmp_path: Path) -> None:
    image = build_image(tmp_path / "l.bin", version="1.0.0", size_bytes=SIZE).path
    args = ["release", "build", "--home", home, "--version", "1.0.0", "--image", image]
    result = run_cli(*args, "--model", "locked-v1")
    line = _one_error_line(result)
    assert "not allowed for model locked-v1" in line and result.returncode == 7


VERIFY_USAGE = {
    "neither": (["--version", "1.0.0"], "give either --home"),
    "repo-without-root": (["--version", "1.0.0", "--repo", "/tmp"], "--root"),
    "bad-version": (["--version", "1.0", "--repo", "/tmp", "--root", "/tmp/x"], "version"),
    "root-missing": (["--version", "1.0.0", "--repo", "{home}", "--root", "/nonexistent"], "root"),
}


@pytest.mark.parametrize("case", list(VERIFY_USAGE.values()), ids=list(VERIFY_USAGE))
def test_release_verify_bad_arguments_fail_with_one_line(
    home: Path, case: tuple[list[str], str]
) -> None:
    args, expected = case
    line = _one_error_line(run_cli("release", "verify", *[a.replace("{home}", str(home)) for a in args]))
    assert expected in line


def _now() -> datetime:
    return datetime.now(UTC)
