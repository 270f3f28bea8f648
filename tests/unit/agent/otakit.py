"""Unit-test kit for the device updater: signed releases, a device folder, a local repository.

The boot key is a software key that lives only in this process's memory (its public half is
written, as the factory writes ``boot-key.pem``). :class:`LocalRepository` implements the
engine's ``Repository`` protocol over files in memory; the integration tests run the same
engine against the real TUF client and server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from securesystemslib.signer import Key

from support import releasekit
from support.releasekit import BootKey
from trustfleet.agent.platform import BootEnv, DeviceLayout
from trustfleet.agent.updater.tufclient import TargetFile
from trustfleet.ota.manifest import (
    DeltaRef,
    delta_target,
    image_target,
    manifest_target,
)

MODEL = "unit-v1"


def image_bytes(version: str, size: int = 96 * 1024) -> bytes:
    """A deterministic image whose versions share most bytes (deltas stay small)."""
    base = hashlib.sha256(b"base").digest() * (size // 32)
    patch = hashlib.sha256(version.encode()).digest() * 64
    return patch + base[len(patch) :]


def manifest_for(key: BootKey, image: bytes, *, version: str, **kw: Any) -> bytes:
    """:func:`support.releasekit.manifest_for` for this kit's model (unless ``model=`` is given)."""
    kw.setdefault("model", MODEL)
    return releasekit.manifest_for(key, image, version=version, **kw)


def make_device(directory: Path, key: BootKey, image: bytes, manifest: bytes) -> DeviceLayout:
    """A device folder as the factory leaves it: fuses, boot key, slot a, env on a."""
    directory.mkdir(parents=True, exist_ok=True)
    layout = DeviceLayout(directory)
    (directory / "fuses.json").write_text(
        json.dumps({"model": MODEL, "boot_key_sha256": key.sha256})
    )
    (directory / "boot-key.pem").write_bytes(key.pem)
    slot = directory / "slots" / "a"
    slot.mkdir(parents=True)
    (slot / "image.bin").write_bytes(image)
    (slot / "release.json").write_bytes(manifest)
    layout.env_store().write(BootEnv(boot_slot="a"))
    return layout


class LocalRepository:
    """The engine's ``Repository`` over in-memory targets (downloads go to ``out``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self.refreshes = 0
        self.on_download: Callable[[str], None] | None = None
        self.keys: dict[str, Key] = {}
        """What :meth:`targets_keys` answers (the targets role's keys of the trusted root)."""

    def add(self, path: str, data: bytes, custom: dict[str, Any]) -> None:
        self.files[path] = (data, {"trustfleet": custom})

    def publish(
        self,
        key: BootKey,
        image: bytes,
        *,
        version: str,
        model: str = MODEL,
        delta_from: tuple[str, bytes, bytes] | None = None,
        **kwargs: Any,
    ) -> bytes:
        """Add manifest, image and (given (old version, old image, delta bytes)) a delta."""
        deltas: tuple[DeltaRef, ...] = ()
        if delta_from is not None:
            old_version, old_image, delta = delta_from
            path = delta_target(model, version, old_version)
            deltas = (
                DeltaRef(
                    target=path,
                    from_version=old_version,
                    from_sha256=hashlib.sha256(old_image).hexdigest(),
                    length=len(delta),
                    sha256=hashlib.sha256(delta).hexdigest(),
                ),
            )
            self.add(
                path,
                delta,
                {"kind": "delta", "model": model, "version": version, "from_version": old_version},
            )
        manifest = manifest_for(key, image, version=version, model=model, deltas=deltas, **kwargs)
        self.add(
            image_target(model, version),
            image,
            {"kind": "image", "model": model, "version": version},
        )
        self.add(
            manifest_target(model, version),
            manifest,
            {"kind": "manifest", "model": model, "version": version},
        )
        return manifest

    def refresh(self) -> None:
        self.refreshes += 1

    def target(self, path: str) -> TargetFile | None:
        if path not in self.files:
            return None
        data, custom = self.files[path]
        digest = hashlib.sha256(data).hexdigest()
        return TargetFile(
            path=path, length=len(data), sha256=digest, custom=MappingProxyType(custom)
        )

    def targets_keys(self) -> Mapping[str, Key]:
        return self.keys

    def targets(self) -> list[TargetFile]:
        return [t for p in sorted(self.files) if (t := self.target(p)) is not None]

    def download(
        self, target: TargetFile, *, progress: Callable[[int, int], None] | None = None
    ) -> Path:
        if self.on_download is not None:
            self.on_download(target.path)
        data, _ = self.files[target.path]
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{target.sha256}.verified"
        path.write_bytes(data)
        if progress is not None:
            for held in [*range(0, len(data), max(len(data) // 10, 1)), len(data)]:
                progress(held, len(data))
        return path
