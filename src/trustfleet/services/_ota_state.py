"""Reading and writing the repository's metadata for the OTA use cases."""

from __future__ import annotations

from datetime import timedelta

from trustfleet.fileio import write_atomic
from trustfleet.ota import RepoFiles
from trustfleet.ota.repository import Expiry, RepoState, metadata_files, read_state
from trustfleet.services._ota_keys import PUBLIC_ROOT
from trustfleet.settings import OtaSettings, ServerSettings

__all__ = ["expiry_of", "load_state", "write_state"]


def expiry_of(ota: OtaSettings) -> Expiry:
    """The validity of each role from the ``[ota]`` settings."""
    return Expiry(
        root=timedelta(days=ota.root_expiry_days),
        targets=timedelta(days=ota.targets_expiry_days),
        snapshot=timedelta(days=ota.snapshot_expiry_days),
        timestamp=timedelta(hours=ota.timestamp_expiry_hours),
    )


def load_state(files: RepoFiles) -> RepoState:
    """The current metadata: newest root, timestamp, and the snapshot and targets it names.

    Raises:
        NotFound: The repository does not exist (code ``ota.repo.missing``).
        VerificationFailed: A file is not valid metadata (code ``ota.repo.corrupt``).
    """
    return read_state(root=files.latest_root(), read=files.read_metadata)


def write_state(
    settings: ServerSettings, files: RepoFiles, state: RepoState, roles: list[str]
) -> None:
    """Write the given roles' metadata (timestamp last) and, for a new root, the public copy."""
    written = metadata_files(state, roles)
    files.write_metadata(written)
    if "root" in roles:
        write_atomic(settings.path(PUBLIC_ROOT), state.root.to_bytes())
