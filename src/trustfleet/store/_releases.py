"""Repository of published firmware releases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from trustfleet.errors import InvalidInput
from trustfleet.store import _validate as check
from trustfleet.store._models import ReleaseRow
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.records import ReleaseRecord

__all__ = ["ReleaseRepository", "version_key"]


def version_key(version: str) -> str:
    """``MAJOR.MINOR.PATCH`` zero-padded so that text order is version order."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 9 for p in parts):
        raise InvalidInput(
            f"release version {version[:40]!r} is not MAJOR.MINOR.PATCH",
            code="store.release.version",
        )
    return ".".join(p.zfill(9) for p in parts)


def _record(row: ReleaseRow) -> ReleaseRecord:
    return ReleaseRecord(
        id=row.id,
        model=row.model,
        version=row.version,
        min_version=row.min_version,
        image_sha256=row.image_sha256,
        image_length=row.image_length,
        manifest=bytes(row.manifest),
        targets_version=row.targets_version,
        published_at=row.published_at,
    )


class ReleaseRepository:
    """Published releases, within one transaction. Get it as ``tx.releases``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add(
        self,
        *,
        model: str,
        version: str,
        min_version: str,
        image_sha256: str,
        image_length: int,
        manifest: bytes,
        targets_version: int,
        now: datetime,
    ) -> ReleaseRecord:
        """Record a published release.

        Raises:
            Conflict: This model already has a release with this version.
            InvalidInput: A value is malformed.
        """
        row = ReleaseRow(
            model=check.text(model, name="model", max_chars=64),
            version=check.text(version, name="version", max_chars=32),
            version_key=version_key(version),
            min_version=check.text(min_version, name="min_version", max_chars=32),
            image_sha256=check.sha256_hex(image_sha256),
            image_length=image_length,
            manifest=manifest,
            targets_version=targets_version,
            published_at=check.aware(now, name="now"),
        )
        version_key(min_version)
        insert(self._handle.session, row, duplicate=f"release {model} {version} already exists")
        return _record(row)

    def get(self, *, model: str, version: str) -> ReleaseRecord | None:
        """The release of this model and version, or None."""
        query = select(ReleaseRow).where(ReleaseRow.model == model, ReleaseRow.version == version)
        row = self._handle.session.scalars(query).one_or_none()
        return None if row is None else _record(row)

    def list(
        self, *, model: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ReleaseRecord]:
        """Releases, newest version first (of one model, or all; ``offset``: skipped)."""
        limit, offset = check.page(limit=limit, offset=offset)
        query = select(ReleaseRow).order_by(ReleaseRow.model, ReleaseRow.version_key.desc())
        if model is not None:
            query = query.where(ReleaseRow.model == model)
        query = query.limit(limit).offset(offset)
        return [_record(row) for row in self._handle.session.scalars(query)]

    def newest_id(self, model: str) -> int | None:
        """The id of the model's most recently published release (cheap: no manifest is read).

        Releases are never changed or removed, so it identifies the set of a model's releases.
        """
        query = select(func.max(ReleaseRow.id)).where(ReleaseRow.model == model)
        return self._handle.session.scalar(query)

    def latest(self, model: str) -> ReleaseRecord | None:
        """The release of ``model`` with the highest version, or None."""
        found = self.list(model=model, limit=1)
        return found[0] if found else None
