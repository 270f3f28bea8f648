"""``factory provision --protocol lwm2m`` through the real CLI: the PSK in the device's own token
equals the one the service decrypts from the store; device.toml gets ``[lwm2m]``; ``device list``
and ``device show`` name the protocol; bad options are one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.server import cli_json, init_home, one_error_line, run_cli
from trustfleet.configfile.device import load_device_settings
from trustfleet.errors import VerificationFailed
from trustfleet.keystore import PinSource, find_module, open_token
from trustfleet.lwm2m.manifest import verify_manifest
from trustfleet.services.lwm2m import lwm2m_backend
from trustfleet.services.lwm2m_manifests import manifest_public_key_pem
from trustfleet.settings.server import load_server_settings
from trustfleet.sim.image import build_image
from trustfleet.sim.process import free_port


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lwm2m-factory") / "home"
    init_home(path, port=free_port())
    return path


def _device_psk(directory: Path, label: str) -> bytes:
    pin = PinSource.parse("file:secrets/token.pin", base_dir=directory).read()
    conf = directory / "softhsm2.conf"
    with open_token(module=find_module(None), label="tf-device", pin=pin, conf=conf) as token:
        return token.read_secret(label)


@pytest.mark.parametrize(
    ("flags", "purpose_suffix", "bootstrap"),
    [((), "", True), (("--no-bootstrap",), ":dm", False)],
    ids=["bootstrap", "no-bootstrap"],
)
def test_provision_psk(
    home: Path, tmp_path: Path, flags: tuple[str, ...], purpose_suffix: str, bootstrap: bool
) -> None:
    doc = cli_json(home, "factory", "provision", "--out", tmp_path / "devices", "--count", "1",
                   "--protocol", "lwm2m", "--security", "psk", *flags)  # fmt: skip
    row = doc["devices"][0]
    device_id, directory = row["device_id"], Path(row["directory"])
    assert row["protocol"] == "lwm2m" and row["psk_identity"] == device_id + purpose_suffix
    section = load_device_settings(directory).lwm2m
    assert section is not None and section.security == "psk"
    assert section.bootstrap is bootstrap and section.psk_identity == row["psk_identity"]
    assert section.server_uri.startswith("coaps://")
    key = _device_psk(directory, section.psk_label)
    pem = (directory / section.manifest_key).read_bytes()
    assert serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == manifest_public_key_pem(load_server_settings(home))
    with lwm2m_backend(load_server_settings(home)) as backend:
        credential = backend.psk_credential(row["psk_identity"])
        with backend.rt.uow.begin(read_only=True) as tx:
            events = tx.events.list(subject=f"device:{device_id}", limit=100)
    created = [e for e in events if e.type == "lwm2m.credential.created"]
    assert [e.details["identity"] for e in created] == [row["psk_identity"]]
    assert key.hex() not in repr([e.details for e in events])
    assert credential is not None and credential.key == key and credential.device_id == device_id
    assert credential.purpose == ("bootstrap" if bootstrap else "dm")
    listed = cli_json(home, "device", "list", "--search", device_id)["devices"]
    assert [d["protocol"] for d in listed] == ["lwm2m"]
    shown = cli_json(home, "device", "show", device_id)
    assert shown["protocol"] == "lwm2m" and shown["lwm2m"] is None


def test_provision_cert_and_bad_options(home: Path, tmp_path: Path) -> None:
    doc = cli_json(home, "factory", "provision", "--out", tmp_path / "devices",
                   "--protocol", "lwm2m", "--security", "cert")  # fmt: skip
    row = doc["devices"][0]
    section = load_device_settings(Path(row["directory"])).lwm2m
    assert section is not None and section.security == "cert" and not section.bootstrap
    assert row["psk_identity"] is None
    for bad in (("--protocol", "coap"), ("--protocol", "lwm2m", "--security", "rpk")):
        result = run_cli("factory", "provision", "--home", home, "--out", tmp_path / "x", *bad)
        assert "must be" in one_error_line(result)


def test_release_publish_signs_a_manifest(home: Path, tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0"):
        image = build_image(tmp_path / f"{version}.bin", version=version, size_bytes=65536).path
        cli_json(home, "release", "build", "--version", version, "--image", image)
        cli_json(home, "release", "publish", "--version", version)
    settings = load_server_settings(home)
    public = serialization.load_pem_public_key(manifest_public_key_pem(settings))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    with lwm2m_backend(settings) as backend:
        packages = [backend.firmware_package("sim-v1", v) for v in ("1.0.0", "1.1.0")]
    sequences = []
    for job in packages:
        assert job is not None and job.image.is_file() and job.image.stat().st_size == 65536
        manifest = verify_manifest(job.manifest, public_key=public, model="sim-v1", min_sequence=0,
                                   max_bytes=4096)  # fmt: skip
        assert manifest.image_sha256 == job.image_sha256 and manifest.version == job.version
        assert manifest.image_path == f"/fw/sim-v1/{job.version}/image"
        sequences.append(manifest.sequence)
    assert sequences == [1, 2]
    with pytest.raises(VerificationFailed):  # the older release is a rollback past sequence 2
        verify_manifest(packages[0].manifest, public_key=public, model="sim-v1",  # type: ignore[union-attr]
                        min_sequence=2, max_bytes=4096)  # fmt: skip
