"""``/tuf/metadata`` and ``/tuf/targets`` on the real HTTPS server, read with curl.

curl is the independent client: device mTLS with a software IDevID (``factory sign-csr``) or
LDevID (EST), Range requests, refusals, and a 16 MiB target streamed with bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.identities import issue_software_service_identity
from support.sbom import write_sbom
from support.scripts import run_script
from support.server import (
    RunningServer,
    curl,
    enroll_software,
    make_software_device,
    running_server,
)

pytestmark = pytest.mark.integration

MODEL = "sim-v1"
BIG_MODEL = "big-v1"
BIG_BYTES = 16 << 20


def _image(path: Path, size: int, seed: bytes) -> Path:
    block = hashlib.sha256(seed).digest() * 2048
    with path.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
            block = hashlib.sha256(block[:32]).digest() * 2048
    return path


_PUBLISH = r"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
for model, image in a["releases"]:
    build_release(rt, image=Path(image), version="1.0.0", model=model, min_version=None,
                  now=datetime.now(UTC), sbom=Path(a["sbom"]))
    publish_release(rt, model=model, version="1.0.0", now=datetime.now(UTC))
rt.close()
"""


def _publish(server: RunningServer, releases: list[tuple[str, Path]]) -> None:
    """Build and publish releases in one child process (one SoftHSM2 configuration each)."""
    sbom = write_sbom(releases[0][1].with_name("sbom.cdx.json"))
    args = {
        "home": str(server.home),
        "releases": [(m, str(p)) for m, p in releases],
        "sbom": str(sbom),
    }
    run_script(_PUBLISH, args, timeout_s=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server with a published 64 KiB release and a published 16 MiB one."""
    base = tmp_path_factory.mktemp("ota-routes")
    with running_server(base) as srv:
        small = _image(base / "small.bin", 64 * 1024, b"small")
        _publish(srv, [(MODEL, small), (BIG_MODEL, _image(base / "big.bin", BIG_BYTES, b"big"))])
        yield srv


@pytest.fixture(scope="module")
def device(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) of a registered device's software IDevID."""
    work = tmp_path_factory.mktemp("ota-device")
    made = make_software_device(server, work, prefix="ota")
    return made.idevid, made.key


def _get(
    server: RunningServer,
    path: str,
    work: Path,
    *,
    identity: tuple[Path, Path] | None,
    extra: tuple[str, ...] = (),
) -> tuple[int, dict[str, str], bytes]:
    body, head = work / "body", work / "head"
    auth = ("--cert", str(identity[0]), "--key", str(identity[1])) if identity else ()
    result = curl("--cacert", server.ca_bundle, *auth, *extra, "-D", head, "-o", body,
                  f"{server.base_url}{path}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = head.read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body.read_bytes()


def _target_path(server: RunningServer, target: str) -> str:
    """The hashed URL path of a target, read from the repository's newest signed targets."""
    metadata = server.home / "ota" / "repo" / "metadata"
    newest = max(metadata.glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
    info = json.loads(newest.read_bytes())["signed"]["targets"][target]
    directory, _, name = target.rpartition("/")
    return f"/tuf/targets/{directory}/{info['hashes']['sha256']}.{name}"


def test_metadata_with_device_certificate(
    server: RunningServer, device: tuple[Path, Path], tmp_path: Path
) -> None:
    status, headers, body = _get(server, "/tuf/metadata/timestamp.json", tmp_path,
                                 identity=device)  # fmt: skip
    assert status == 200
    assert headers["cache-control"] == "no-store"
    assert headers["accept-ranges"] == "bytes"
    assert json.loads(body)["signed"]["_type"] == "timestamp"
    status, headers, body = _get(server, "/tuf/metadata/1.root.json", tmp_path, identity=device)
    assert status == 200 and "no-store" not in headers["cache-control"]
    assert body == (server.home / "ota" / "repo" / "metadata" / "1.root.json").read_bytes()


def test_target_and_ranges(
    server: RunningServer, device: tuple[Path, Path], tmp_path: Path
) -> None:
    path = _target_path(server, f"{MODEL}/1.0.0/image.bin")
    status, headers, full = _get(server, path, tmp_path, identity=device)
    assert status == 200 and len(full) == 64 * 1024
    assert hashlib.sha256(full).hexdigest() == path.rsplit("/", 1)[1].split(".")[0]
    cases = {
        "bytes=100-199": (206, full[100:200], "bytes 100-199/65536"),
        "bytes=65000-": (206, full[65000:], "bytes 65000-65535/65536"),
        "bytes=-10": (206, full[-10:], "bytes 65526-65535/65536"),
        "bytes=65500-99999": (206, full[65500:], "bytes 65500-65535/65536"),
        "bytes=65536-": (416, b"", "bytes */65536"),
        "bytes=5-1": (416, b"", "bytes */65536"),
        "bytes=0-1,5-6": (416, b"", "bytes */65536"),
    }
    for header, (want_status, want_body, want_range) in cases.items():
        status, headers, body = _get(server, path, tmp_path, identity=device,
                                     extra=("-H", f"Range: {header}"))  # fmt: skip
        assert (status, body, headers["content-range"]) == (want_status, want_body, want_range), (
            header
        )


@pytest.mark.parametrize(
    "path",
    [
        "/tuf/metadata/root.json",
        "/tuf/metadata/..%2F..%2Ftrustfleet.toml",
        "/tuf/metadata/../../trustfleet.toml",
        "/tuf/targets/../metadata/timestamp.json",
        "/tuf/targets/%2e%2e/%2e%2e/trustfleet.toml",
        "/tuf/targets/sim-v1/.hidden",
        "/tuf/targets/sim-v1/1.0.0/image.bin",
        "/tuf/metadata/0.root.json",
    ],
    ids=[
        "unversioned-root",
        "encoded-dotdot",
        "dotdot",
        "targets-escape",
        "encoded-escape",
        "dotfile",
        "unhashed-name",
        "version-zero",
    ],
)
def test_bad_names_are_not_found(
    server: RunningServer, device: tuple[Path, Path], tmp_path: Path, path: str
) -> None:
    status, _, body = _get(server, path, tmp_path, identity=device, extra=("--path-as-is",))
    assert status == 404, body
    assert b"[ota]" not in body and b"pkcs11" not in body


def test_refused_without_a_device_certificate(
    server: RunningServer, device: tuple[Path, Path], tmp_path: Path
) -> None:
    status, headers, _ = _get(server, "/tuf/metadata/timestamp.json", tmp_path, identity=None)
    assert status == 403 and headers["x-trustfleet-error"] == "ota.auth.denied"
    # A certificate from our device CA that is not a device's (a service identity): refused.
    cert, key = tmp_path / "svc.pem", tmp_path / "svc.key"
    issue_software_service_identity(server.home, cn="svc.other", cert=cert, key=key)
    status, _, _ = _get(server, "/tuf/metadata/timestamp.json", tmp_path, identity=(cert, key))
    assert status == 403


def test_ldevid_works_and_revocation_refuses(server: RunningServer, tmp_path: Path) -> None:
    made = make_software_device(server, tmp_path, prefix="otarev")
    ldevid, key = enroll_software(server, made, tmp_path)
    status, _, _ = _get(server, "/tuf/metadata/timestamp.json", tmp_path, identity=(ldevid, key))
    assert status == 200
    result = server.cli("device", "revoke", made.device_id, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    for identity in ((ldevid, key), (made.idevid, made.key)):
        status, _, _ = _get(server, "/tuf/metadata/timestamp.json", tmp_path, identity=identity)
        assert status == 403


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_large_target_streams_with_bounded_memory(
    server: RunningServer, device: tuple[Path, Path], tmp_path: Path
) -> None:
    path = _target_path(server, f"{BIG_MODEL}/1.0.0/image.bin")
    pids = server.server_pids()
    baseline = _rss_kib(pids)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _rss_kib(pids))

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = tmp_path / "big.bin"
    try:
        # A slow client (4 MiB/s): without back-pressure the server would queue the file.
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "60", "--limit-rate", "4M", "--cacert",
             str(server.ca_bundle), "--cert", str(device[0]), "--key", str(device[1]),
             "-o", str(out), "-w", "%{http_code}", f"{server.base_url}{path}"],
            capture_output=True, timeout=90, check=False,
        )  # fmt: skip
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0 and result.stdout == b"200", result.stderr
    assert out.stat().st_size == BIG_BYTES
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert path.endswith(f"/{digest}.image.bin")
    grown_mib = (peak - baseline) / 1024
    print(f"server RSS grew by {grown_mib:.1f} MiB while streaming {BIG_BYTES >> 20} MiB")
    assert grown_mib < 4, f"server memory grew by {grown_mib:.1f} MiB for a streamed file"
