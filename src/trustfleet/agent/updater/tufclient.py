"""The device's TUF client: python-tuf's ngclient behind TrustFleet's errors and bounds.

ngclient implements the TUF client workflow (root rotation, timestamp, snapshot, targets, with
rollback, freeze and mix-and-match checks) and persists a role only after it verified it, so a
refused refresh never writes anything unverified; roles verified earlier in the same refresh
(root rotations, TUF 5.3.8; a new timestamp whose snapshot is then refused) are kept, as the
specification and tuf-conformance require. This module adds:

* one translation of tuf/securesystemslib exceptions (``ota.tuf.<what>``, see ``_tuferrors``);
* named bounds for every metadata file, for targets, and for root rotations;
* resumable target downloads (``<hash>.part`` resumed with ``Range``, ``<hash>.verified``
  once length and every listed hash match the verified metadata).

Targets are fetched under hash-prefixed names (consistent snapshots, ``docs/ota.md``), the
hash being the strongest one listed (SHA-256 when present, else SHA-512, …; ``_download``).
Expiry is checked against the system clock (ngclient reads it; it cannot be injected).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, no __all__ there
    TargetFile as TufTargetFile,
)
from tuf.api.metadata import Targets  # type: ignore[attr-defined]  # re-exported
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from trustfleet.agent.updater._download import (
    NAMING_HASHES,
    Expected,
    download_resumable,
    naming_hash,
    new_digest,
)
from trustfleet.agent.updater._http import RangedBody
from trustfleet.agent.updater._tuferrors import translate
from trustfleet.agent.updater.fetcher import HttpFetcher, RangeFetcher
from trustfleet.errors import Config, Conflict, InvalidInput, VerificationFailed
from trustfleet.fileio import write_atomic

__all__ = ["TargetFile", "TufBounds", "TufClient", "init_trusted_root"]

logger = logging.getLogger(__name__)

ROOT_FILE = "root.json"


@dataclass(frozen=True)
class TufBounds:
    """Upper bounds on what the repository may make the device read (safe defaults)."""

    max_root_bytes: int = 512 * 1024
    max_timestamp_bytes: int = 16 * 1024
    max_snapshot_bytes: int = 2 * 1024 * 1024
    max_targets_bytes: int = 32 * 1024 * 1024
    max_target_bytes: int = 1 << 30
    max_root_rotations: int = 256
    max_delegations: int = 32
    max_download_attempts: int = 3


@dataclass(frozen=True)
class TargetFile:
    """A target as the verified TUF metadata describes it.

    ``hashes`` holds every hash TUF lists; all are checked on download. ``sha256`` is the
    listed SHA-256, or ``""`` when the target lists none (the TUF specification allows any
    algorithm; TrustFleet's own repository always lists SHA-256, and a comparison with a
    manifest's SHA-256 then fails closed).
    """

    path: str
    length: int
    sha256: str
    custom: Mapping[str, Any]
    hashes: Mapping[str, str] = field(default_factory=dict, compare=False)


class TufClient:
    """Refresh trusted metadata, look targets up, download them resumably.

    Args:
        metadata_dir: The trusted metadata (``root.json`` installed by
            :func:`init_trusted_root`; ngclient keeps the other roles there).
        metadata_url: Base URL of the repository's metadata (``.../tuf/metadata``).
        targets_url: Base URL of its targets (``.../tuf/targets``).
        download_dir: Where partial and verified downloads live.
        fetcher: How to reach the repository (default: :class:`HttpFetcher`; on a device an
            ``MtlsFetcher``). Without ``fetch_from`` downloads start over instead of resuming.
        bounds: Size and count bounds.

    Raises:
        Config: ``metadata_dir`` holds no trusted root.
    """

    def __init__(
        self,
        *,
        metadata_dir: Path,
        metadata_url: str,
        targets_url: str,
        download_dir: Path,
        fetcher: FetcherInterface | None = None,
        bounds: TufBounds = TufBounds(),
    ) -> None:
        if not (metadata_dir / ROOT_FILE).exists():
            raise Config(
                f"no trusted TUF root in {metadata_dir}",
                hint="the factory installs tuf/metadata/root.json (init_trusted_root)",
                code="ota.tuf.no_root",
            )
        self._metadata_dir = metadata_dir
        self._metadata_url = metadata_url.rstrip("/") + "/"
        self._targets_url = targets_url.rstrip("/") + "/"
        self._download_dir = download_dir
        self._fetcher = fetcher if fetcher is not None else HttpFetcher()
        self._bounds = bounds
        self._updater: Updater | None = None

    def refresh(self) -> None:
        """Update root (rotations), timestamp, snapshot and top-level targets.

        Raises:
            VerificationFailed: ``ota.tuf.<what>`` — the repository's metadata was refused;
                nothing unverified was written (roles verified before the refusal are kept).
            Unavailable: ``ota.tuf.unavailable`` (repository) or ``ota.tuf.storage`` (disk).
        """
        self._updater = None
        try:
            updater = Updater(
                str(self._metadata_dir),
                self._metadata_url,
                target_base_url=self._targets_url,
                fetcher=self._fetcher,
                config=self._config(),
                bootstrap=None,
            )
            updater.refresh()
        except Exception as exc:  # every tuf/sslib/OS error, translated once
            raise translate(exc, doing="refreshing TUF metadata") from exc
        self._updater = updater
        logger.info("TUF metadata refreshed (targets v%d)", _trusted(updater).targets.version)

    def target(self, path: str) -> TargetFile | None:
        """The verified description of ``path`` (delegations followed), or None if unlisted.

        Raises:
            VerificationFailed: A delegated role was refused, or the target exceeds the bounds
                or lists no hash this device may use (``ota.tuf.hash``).
            Unavailable: The repository could not be read.
        """
        updater = self._refreshed()
        try:
            info = updater.get_targetinfo(path)
        except Exception as exc:
            raise translate(exc, doing=f"looking up {path}") from exc
        return None if info is None else self._convert(info)

    def targets_keys(self) -> Mapping[str, Key]:
        """The keys of the top-level targets role, by keyid, from the TRUSTED root.

        The root is the one this client verified at its last refresh (after any rotations),
        never the repository's unverified copy; release provenance (DSSE) is signed by this
        role's key (docs/supply-chain.md).
        """
        root = _trusted(self._refreshed()).root
        role = root.roles[Targets.type]
        return MappingProxyType({k: root.keys[k] for k in role.keyids if k in root.keys})

    def targets(self) -> list[TargetFile]:
        """Every target the top-level targets role lists (delegations not walked)."""
        updater = self._refreshed()
        listed = _trusted(updater).targets.targets
        return [self._convert(info) for _, info in sorted(listed.items())]

    def download(
        self, target: TargetFile, *, progress: Callable[[int, int], None] | None = None
    ) -> Path:
        """Download ``target`` (resuming a partial one) and return the verified file.

        Returns:
            ``download_dir/<hash>.verified`` (the strongest listed hash), whose length and
            every listed hash match ``target``.

        Raises:
            VerificationFailed: ``ota.tuf.length`` / ``ota.tuf.hash`` (the partial is deleted).
            Unavailable: ``ota.tuf.unavailable`` (the partial is kept for the next call).
        """
        self._check_bounds(target)
        hashes = dict(target.hashes) or ({"sha256": target.sha256} if target.sha256 else {})
        others = {k: v for k, v in hashes.items() if k != "sha256"}
        expected = Expected(target.path, target.length, hashes.get("sha256", ""), others)
        dirname, sep, basename = target.path.rpartition("/")
        name = f"{dirname}{sep}{expected.file_stem()}.{basename}"
        if not self._consistent_snapshot():
            name = target.path
        return download_resumable(
            _ranged(self._fetcher),
            url=self._targets_url + name,
            expected=expected,
            directory=self._download_dir,
            attempts=self._bounds.max_download_attempts,
            progress=progress,
        )

    def _config(self) -> UpdaterConfig:
        b = self._bounds
        return UpdaterConfig(
            max_root_rotations=b.max_root_rotations,
            max_delegations=b.max_delegations,
            root_max_length=b.max_root_bytes,
            timestamp_max_length=b.max_timestamp_bytes,
            snapshot_max_length=b.max_snapshot_bytes,
            targets_max_length=b.max_targets_bytes,
            prefix_targets_with_hash=True,
        )

    def _refreshed(self) -> Updater:
        if self._updater is None:
            self.refresh()
        assert self._updater is not None  # noqa: S101  # refresh() sets it or raises
        return self._updater

    def _consistent_snapshot(self) -> bool:
        return bool(_trusted(self._refreshed()).root.consistent_snapshot)

    def _convert(self, info: TufTargetFile) -> TargetFile:
        _check_hashes(info.path, info.hashes)
        target = TargetFile(
            path=info.path,
            length=info.length,
            sha256=info.hashes.get("sha256", ""),
            custom=MappingProxyType(dict(info.custom or {})),
            hashes=MappingProxyType(dict(info.hashes)),
        )
        self._check_bounds(target)
        return target

    def _check_bounds(self, target: TargetFile) -> None:
        if target.length > self._bounds.max_target_bytes:
            raise VerificationFailed(
                f"{target.path} is {target.length} bytes, more than the "
                f"{self._bounds.max_target_bytes} this device accepts",
                hint="raise max_target_bytes if the image really is that large",
                code="ota.tuf.length",
            )


def _check_hashes(path: str, hashes: Mapping[str, str]) -> None:
    """Refuse a target whose hashes cannot all be checked or none of which may name it."""
    for algorithm in hashes:
        try:
            new_digest(algorithm)
        except (ValueError, TypeError) as exc:
            raise VerificationFailed(
                f"{path} lists the hash algorithm {algorithm[:32]!r}, which this device "
                "cannot check",
                hint="list sha256 (or sha512) hashes for every target",
                code="ota.tuf.hash",
            ) from exc
    if naming_hash(hashes) is None:
        raise VerificationFailed(
            f"{path} lists no hash this device accepts ({', '.join(NAMING_HASHES)})",
            hint="list sha256 (or sha512) hashes for every target",
            code="ota.tuf.hash",
        )


def init_trusted_root(
    metadata_dir: Path, root_bytes: bytes, *, max_root_bytes: int = TufBounds.max_root_bytes
) -> None:
    """Install the initial trusted root (what the factory gives a device).

    Args:
        metadata_dir: The client's trusted metadata directory (created if needed).
        root_bytes: The root metadata, which must be signed by its own threshold of keys.
        max_root_bytes: Bound on ``root_bytes``.

    Raises:
        InvalidInput: Too large, not root metadata, or not self-signed.
        Conflict: A different trusted root is already installed.
    """
    if len(root_bytes) > max_root_bytes:
        raise InvalidInput(
            f"the TUF root is {len(root_bytes)} bytes, more than {max_root_bytes}",
            hint="pass the repository's public/tuf-root.json",
            code="ota.tuf.root_invalid",
        )
    try:
        TrustedMetadataSet(root_bytes, EnvelopeType.METADATA)
    except Exception as exc:  # deserialization or signature errors from tuf/sslib
        raise InvalidInput(
            f"not a self-signed TUF root: {exc}",
            hint="pass the repository's public/tuf-root.json",
            code="ota.tuf.root_invalid",
        ) from exc
    metadata_dir.mkdir(parents=True, exist_ok=True)
    target = metadata_dir / ROOT_FILE
    if target.exists():
        if target.read_bytes() == root_bytes:
            return
        raise Conflict(
            f"{metadata_dir} already trusts another TUF root",
            hint="a device's trust anchor changes only through signed root rotations",
            code="ota.tuf.root_exists",
        )
    write_atomic(target, root_bytes)


def _trusted(updater: Updater) -> TrustedMetadataSet:
    # ngclient exposes no public accessor for the verified top-level roles; this attribute is
    # the trusted set it verified (python-tuf 5 to 7).
    trusted: TrustedMetadataSet = updater._trusted_set
    return trusted


class _WholeFile:
    """A ``RangeFetcher`` over a fetcher without ranges: every attempt starts over."""

    def __init__(self, fetcher: FetcherInterface) -> None:
        self._fetcher = fetcher

    def fetch_from(self, url: str, start: int) -> RangedBody:
        chunks: Iterator[bytes] = iter(self._fetcher.fetch(url))
        return RangedBody(chunks, start=0)


def _ranged(fetcher: FetcherInterface) -> RangeFetcher:
    if isinstance(fetcher, RangeFetcher):
        return fetcher
    return _WholeFile(fetcher)
