"""Campaign ids as operators type them: the full id, or a unique prefix of it."""

from __future__ import annotations

from typing import Final

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.store import CampaignRecord, Transaction

__all__ = ["MIN_PREFIX_CHARS", "PREFIX_SCAN_LIMIT", "require_campaign"]

MIN_PREFIX_CHARS: Final = 6
"""Shortest prefix accepted (``cmp-`` and at least two hex digits)."""
PREFIX_SCAN_LIMIT: Final = 1000
"""A prefix is looked up among this many newest campaigns (the ones ``campaign list`` shows)."""
_MAX_ID_CHARS: Final = 64


def require_campaign(tx: Transaction, campaign_id: str) -> CampaignRecord:
    """The campaign named by its id or by a unique prefix of it.

    Raises:
        NotFound: No campaign has this id or prefix.
        InvalidInput: The prefix names more than one campaign.
    """
    typed = campaign_id[:_MAX_ID_CHARS]
    record = tx.campaigns.get(typed)
    if record is not None:
        return record
    matches = []
    if len(typed) >= MIN_PREFIX_CHARS:
        recent = tx.campaigns.list(limit=PREFIX_SCAN_LIMIT)
        matches = [c for c in recent if c.id.startswith(typed)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidInput(
            f"{len(matches)} campaigns start with {typed!r}",
            hint="type more of the id (see 'trustfleet campaign list')",
            code="campaign.ambiguous",
        )
    raise NotFound(
        f"campaign {typed!r} not found",
        hint="see the campaigns with 'trustfleet campaign list'",
        code="campaign.not_found",
    )
