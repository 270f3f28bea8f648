"""Kit of the device-side attestation tests: a device folder with a boot chain and a real TPM.

The boot key is a software P-256 key held only in this process's memory (its public half is
written as the factory writes ``boot-key.pem``). The TPM is a real swtpm: a copy of a state
manufactured once per session by the simulated TPM vendor, with the AK already created (as
the factory leaves it).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from support import releasekit
from support.releasekit import NOW
from support.swtpm import clone_state
from trustfleet import __version__
from trustfleet.agent.platform import BootEnv, DeviceLayout
from trustfleet.agent.platform.measured_boot import DeviceTpm
from trustfleet.attestation import (
    AttestationPolicy,
    Challenge,
    DeviceAttestationState,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    load_ak_public_key,
    measure_identity,
)

MODEL = "attdev-v1"


def image_bytes(version: str, size: int = 32 * 1024) -> bytes:
    """A deterministic image per version."""
    return hashlib.sha256(version.encode()).digest() * (size // 32)


class BootKey(releasekit.BootKey):
    """The kit's boot key: manifests for this kit's model."""

    def manifest(self, image: bytes, *, version: str) -> bytes:
        return releasekit.manifest_for(self, image, version=version, model=MODEL)


def install(directory: Path, slot: str, image: bytes, manifest: bytes) -> None:
    """Write a complete slot."""
    folder = directory / "slots" / slot
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image.bin").write_bytes(image)
    (folder / "release.json").write_bytes(manifest)


def make_device(directory: Path, key: BootKey, manufactured_tpm: Path) -> DeviceLayout:
    """A device as the factory leaves it: fuses, boot key, release 1.0.0 in slot a, a TPM."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fuses.json").write_text(
        json.dumps({"model": MODEL, "boot_key_sha256": key.sha256})
    )
    (directory / "boot-key.pem").write_bytes(key.pem)
    image = image_bytes("1.0.0")
    install(directory, "a", image, key.manifest(image, version="1.0.0"))
    layout = DeviceLayout(directory)
    layout.env_store().write(BootEnv(boot_slot="a"))
    tpm_dir = DeviceTpm(directory).state_dir
    clone_state(manufactured_tpm, tpm_dir)
    return layout


def references(*releases: tuple[str, bytes]) -> ReferenceSet:
    """The service's reference values for MODEL: its fixed stages and these releases."""
    model = ModelReference(
        model=MODEL,
        rom=frozenset({measure_identity(f"trustfleet-sim-rom/{MODEL}/1")}),
        bootloader=frozenset({measure_identity(f"trustfleet-sim-boot/{MODEL}/1")}),
        agent=frozenset({measure_identity(f"trustfleet-agent/{__version__}")}),
    )
    return ReferenceSet.build(
        models=[model],
        releases=[
            ReleaseReference(model=MODEL, version=v, image_sha256=hashlib.sha256(img).digest())
            for v, img in releases
        ],
    )


def device_state(ak_pem: str, qualified_name: bytes, **extra: object) -> DeviceAttestationState:
    """What the service knows about the device (its AK)."""
    return DeviceAttestationState(
        device_id="dev-test",
        model=MODEL,
        ak_public_key=load_ak_public_key(ak_pem.encode()),
        ak_qualified_name=qualified_name,
        **extra,  # type: ignore[arg-type]
    )


POLICY = AttestationPolicy()


def challenge(now: datetime = NOW) -> Challenge:
    from trustfleet.attestation import make_challenge

    return make_challenge(now=now)
