"""The update repository with real SoftHSM2 keys, checked by python-tuf's own client.

A home is made by ``init_server_home`` (which creates the OTA tokens and the repository); the
repository folder is served by a plain HTTP server on loopback and read by ngclient's
``Updater`` exactly as a device would, after each step: init, publish, timestamp refresh,
root rotation and online-key rotation.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tuf.ngclient import Updater

from support.runtimes import home_runtime
from support.sbom import write_sbom
from trustfleet.errors import Conflict, NotFound, VerificationFailed
from trustfleet.ota.manifest import parse_manifest
from trustfleet.ota.release import verify_boot_signature
from trustfleet.services.ceremony import CeremonyKeys
from trustfleet.services.ota import (
    build_release,
    device_provisioning,
    init_offline_repository,
    publish_release,
    refresh_timestamp_if_due,
    repository_status,
    rotate_online_keys,
    rotate_root,
)
from trustfleet.services.runtime import Runtime
from trustfleet.sim.server import SimServer

pytestmark = pytest.mark.integration

MODEL = "sim-v1"


def _keys(rt: Runtime) -> CeremonyKeys:
    """Every custodian of the home's offline folder (SimServer's layout: support.runtimes)."""
    return SimServer(rt.settings.home).ceremony_keys()


def _now() -> datetime:
    # ngclient checks expiry against the real clock, so the repository signs with it.
    return datetime.now(UTC)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        return


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "ota", organization="OTA Test", now=_now())


@pytest.fixture(scope="module")
def repo_url(rt: Runtime) -> Iterator[str]:
    repo = rt.settings.path(rt.settings.ota.repo_dir)
    handler = functools.partial(_Quiet, directory=str(repo))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


class Device:
    """A TUF client with its own trusted-metadata folder (what a device keeps)."""

    def __init__(self, base: Path, root_json: bytes, url: str) -> None:
        self.metadata = base / "metadata"
        self.downloads = base / "downloads"
        self.metadata.mkdir(parents=True)
        self.downloads.mkdir()
        (self.metadata / "root.json").write_bytes(root_json)
        self.url = url

    def updater(self) -> Updater:
        return Updater(
            metadata_dir=str(self.metadata),
            metadata_base_url=f"{self.url}/metadata/",
            target_dir=str(self.downloads),
            target_base_url=f"{self.url}/targets/",
            bootstrap=None,  # the root.json the device keeps (written by the factory)
        )

    def fetch(self, target: str) -> bytes:
        updater = self.updater()
        updater.refresh()
        info = updater.get_targetinfo(target)
        assert info is not None, f"{target} is not in the signed targets"
        return Path(updater.download_target(info)).read_bytes()

    def trusted(self, role: str) -> dict[str, object]:
        doc: dict[str, object] = json.loads((self.metadata / f"{role}.json").read_bytes())
        return doc


def _image(path: Path, *, seed: bytes, size: int) -> Path:
    block = hashlib.sha256(seed).digest() * (4096 // 32)
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path


def _publish(rt: Runtime, tmp: Path, version: str, *, seed: bytes, size: int) -> bytes:
    image = _image(tmp / f"{version}.bin", seed=seed, size=size)
    sbom = write_sbom(tmp / f"{version}.cdx.json")
    build_release(
        rt, image=image, version=version, model=MODEL, min_version=None, now=_now(), sbom=sbom
    )
    publish_release(rt, model=MODEL, version=version, now=_now())
    return image.read_bytes()


def _events(rt: Runtime) -> list[str]:
    with rt.uow.begin(read_only=True) as tx:
        return [e.type for e in tx.events.list(after_id=0, limit=1000)]


def test_repository_lifecycle_is_followed_by_ngclient(
    rt: Runtime, repo_url: str, tmp_path: Path
) -> None:
    first = device_provisioning(rt, model=MODEL)
    assert first.release is None and first.image_path is None
    device = Device(tmp_path / "device", first.root_json, repo_url)
    device.updater().refresh()  # an empty repository verifies
    assert "ota.repository.created" in _events(rt)

    old = _publish(rt, tmp_path, "1.0.0", seed=b"one", size=1 << 20)
    new = _publish(rt, tmp_path, "1.1.0", seed=b"one", size=(1 << 20) + 8192)
    assert device.fetch(f"{MODEL}/1.1.0/image.bin") == new
    manifest = parse_manifest(device.fetch(f"{MODEL}/1.1.0/release.json"))
    assert manifest.min_version == "1.0.0"
    assert [d.from_version for d in manifest.deltas] == ["1.0.0"]
    assert manifest.deltas[0].from_sha256 == hashlib.sha256(old).hexdigest()
    delta = device.fetch(manifest.deltas[0].target)
    assert hashlib.sha256(delta).hexdigest() == manifest.deltas[0].sha256
    boot_pem = rt.settings.path("public/boot-key.pem").read_bytes()
    boot_key = serialization.load_pem_public_key(boot_pem)
    assert isinstance(boot_key, ec.EllipticCurvePublicKey)
    verify_boot_signature(manifest, public_key=boot_key)

    bundle = device_provisioning(rt, model=MODEL)
    assert bundle.release is not None and bundle.release.version == "1.1.0"
    assert bundle.image_path is not None and bundle.image_path.read_bytes() == new
    assert bundle.boot_key_sha256 == manifest.boot.key_sha256
    assert _events(rt).count("release.published") == 2


def test_timestamp_refresh_only_when_due_and_clients_follow(
    rt: Runtime, repo_url: str, tmp_path: Path
) -> None:
    device = Device(tmp_path / "device", device_provisioning(rt, model=MODEL).root_json, repo_url)
    device.updater().refresh()
    before = repository_status(rt)["roles"]["timestamp"]["version"]
    assert refresh_timestamp_if_due(rt, now=_now()) is False
    # 20 h later the 24 h timestamp is within the 6 h margin.
    assert refresh_timestamp_if_due(rt, now=_now() + timedelta(hours=20)) is True
    assert refresh_timestamp_if_due(rt, now=_now()) is False
    after = repository_status(rt)["roles"]["timestamp"]
    assert after["version"] == before + 1
    device.updater().refresh()
    assert device.trusted("timestamp")["signed"]["version"] == before + 1  # type: ignore[index]


def test_root_and_online_key_rotation_are_followed(
    rt: Runtime, repo_url: str, tmp_path: Path
) -> None:
    v1_root = rt.settings.path(rt.settings.ota.repo_dir).joinpath("metadata/1.root.json")
    device = Device(tmp_path / "device", v1_root.read_bytes(), repo_url)
    device.updater().refresh()
    old_root_keys = repository_status(rt)["roles"]["root"]["keyids"]

    status = rotate_root(rt, _keys(rt), now=_now())
    assert status["roles"]["root"]["threshold"] == 2
    assert not set(status["roles"]["root"]["keyids"]) & set(old_root_keys)
    old_timestamp_key = status["roles"]["timestamp"]["keyids"]
    status = rotate_online_keys(rt, _keys(rt), now=_now())
    assert status["roles"]["timestamp"]["keyids"] != old_timestamp_key
    version = status["roles"]["root"]["version"]

    # A device still holding root v1 walks the chain and verifies the new online keys.
    assert device.fetch(f"{MODEL}/1.1.0/image.bin")
    assert device.trusted("root")["signed"]["version"] == version  # type: ignore[index]
    public = json.loads(rt.settings.path("public/tuf-root.json").read_bytes())
    assert public["signed"]["version"] == version
    assert (
        device_provisioning(rt, model=MODEL).root_json
        == v1_root.with_name(f"{version}.root.json").read_bytes()
    )
    assert refresh_timestamp_if_due(rt, now=_now() + timedelta(hours=20)) is True
    device.updater().refresh()
    events = _events(rt)
    assert "ota.root.rotated" in events and "ota.online_keys.rotated" in events


def test_refusals(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(Conflict):
        publish_release(rt, model=MODEL, version="1.0.0", now=_now())
    with pytest.raises(NotFound):
        publish_release(rt, model=MODEL, version="7.0.0", now=_now())
    with pytest.raises(Conflict):
        init_offline_repository(rt.settings, offline=tmp_path / "o", pins_out=None, now=_now())
    assert not (tmp_path / "o").exists()
    image = _image(tmp_path / "2.0.0.bin", seed=b"two", size=8192)
    sbom = write_sbom(tmp_path / "2.0.0.cdx.json")
    build_release(
        rt, image=image, version="2.0.0", model=MODEL, min_version=None, now=_now(), sbom=sbom
    )
    staged = rt.settings.path(rt.settings.ota.staging_dir) / MODEL / "2.0.0" / "image.bin"
    staged.write_bytes(b"tampered" + staged.read_bytes()[8:])
    with pytest.raises(VerificationFailed):
        publish_release(rt, model=MODEL, version="2.0.0", now=_now())
